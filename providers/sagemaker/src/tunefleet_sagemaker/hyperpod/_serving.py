"""Serving: not through HyperPod.

HyperPod serves models on EKS clusters through its inference operator
(``InferenceEndpointConfig``, ``inference.sagemaker.aws.amazon.com/v1``; its CRDs are
published with the sagemaker-hyperpod CLI's Helm chart). This version of the provider does
not drive it yet, so it does not implement :class:`~tunefleet.provider.Serving`: a spec
with an endpoint is refused at plan with a pointer to the way that works today. The model
a HyperPod job writes is in S3, and the ``sagemaker`` provider serves it on a SageMaker
endpoint.
"""

from __future__ import annotations

from tunefleet.provider import Unmet
from tunefleet.spec import RunSpec

__all__ = ["unmet"]

REASON = (
    "the hyperpod provider does not serve models yet (HyperPod's inference operator is not "
    "driven by this version). The trained model is written to S3 (see `tunefleet artifacts`); "
    "serve it on a SageMaker endpoint with a `sagemaker` target (docs/providers/hyperpod.md, "
    "Serving)"
)


def unmet(spec: RunSpec) -> list[Unmet]:
    """The spec's endpoint, refused with the reason and the way to serve the model."""
    if spec.endpoint is None:
        return []
    return [Unmet(requirement="endpoint", reason=REASON)]
