"""What a HyperPod job costs, and what each instance type offers it.

A HyperPod cluster's instances are billed by the hour whether or not they train, so a
job's cost is its *share* of the cluster's time: nodes x hours x the instance's price, and
every estimate says so. HyperPod's own price list is not among the references available
offline; the SageMaker training price of the same instance type (:mod:`tunefleet_sagemaker.pricing`,
dated) stands in, named as such in each estimate, and ``options.price_per_hour`` replaces
it with the rate the account pays (savings plans and flexible training plans differ).

:data:`INSTANCE_RESOURCES`: GPUs and EFA devices of the instance types HyperPod offers,
from the sagemaker-hyperpod SDK's table (aws/sagemaker-hyperpod-cli,
src/sagemaker/hyperpod/training/constants.py, ``INSTANCE_RESOURCES``), which its CLI uses
to fill a job's resource requests. A type missing here trains with one process per node
unless ``options.nproc_per_node`` says otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import NamedTuple

from tunefleet.events import CostEvent
from tunefleet_sagemaker.pricing import PRICES, REGIONS

__all__ = [
    "INSTANCE_RESOURCES",
    "PRICES",
    "PRICE_SOURCE",
    "REGIONS",
    "Resources",
    "job_cost",
    "resources",
]

PRICE_SOURCE = "SageMaker's training price of the instance type, standing in for HyperPod's"


class Resources(NamedTuple):
    """What one instance of a type offers a job."""

    gpus: int
    efa: int


INSTANCE_RESOURCES: dict[str, Resources] = {
    "ml.p4d.24xlarge": Resources(8, 4),
    "ml.p4de.24xlarge": Resources(8, 4),
    "ml.p5.4xlarge": Resources(1, 1),
    "ml.p5.48xlarge": Resources(8, 32),
    "ml.p5e.48xlarge": Resources(8, 32),
    "ml.p5en.48xlarge": Resources(8, 16),
    "ml.p6-b200.48xlarge": Resources(8, 8),
    "ml.g5.xlarge": Resources(1, 0),
    "ml.g5.2xlarge": Resources(1, 0),
    "ml.g5.4xlarge": Resources(1, 0),
    "ml.g5.8xlarge": Resources(1, 1),
    "ml.g5.12xlarge": Resources(4, 1),
    "ml.g5.16xlarge": Resources(1, 1),
    "ml.g5.24xlarge": Resources(4, 1),
    "ml.g5.48xlarge": Resources(8, 1),
    "ml.g6.xlarge": Resources(1, 0),
    "ml.g6.2xlarge": Resources(1, 0),
    "ml.g6.4xlarge": Resources(1, 0),
    "ml.g6.8xlarge": Resources(1, 1),
    "ml.g6.12xlarge": Resources(4, 1),
    "ml.g6.16xlarge": Resources(1, 1),
    "ml.g6.24xlarge": Resources(4, 1),
    "ml.g6.48xlarge": Resources(8, 1),
    "ml.g6e.xlarge": Resources(1, 0),
    "ml.g6e.2xlarge": Resources(1, 0),
    "ml.g6e.4xlarge": Resources(1, 0),
    "ml.g6e.8xlarge": Resources(1, 1),
    "ml.g6e.12xlarge": Resources(4, 1),
    "ml.g6e.16xlarge": Resources(1, 1),
    "ml.g6e.24xlarge": Resources(4, 2),
    "ml.g6e.48xlarge": Resources(8, 4),
    "ml.gr6.4xlarge": Resources(1, 0),
    "ml.gr6.8xlarge": Resources(1, 1),
    "ml.g7e.2xlarge": Resources(1, 0),
    "ml.g7e.4xlarge": Resources(1, 0),
    "ml.g7e.8xlarge": Resources(1, 1),
    "ml.g7e.12xlarge": Resources(2, 1),
    "ml.g7e.24xlarge": Resources(4, 2),
    "ml.g7e.48xlarge": Resources(8, 4),
    "ml.p6-b300.48xlarge": Resources(8, 16),
    "ml.p6e-gb200.36xlarge": Resources(4, 0),
    **{
        f"ml.{family}.{size}": Resources(0, 0)
        for family, sizes in {
            "c5": ("large", "xlarge", "2xlarge", "4xlarge", "9xlarge", "12xlarge", "18xlarge"),
            "m5": ("large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge"),
            "t3": ("medium", "large", "xlarge", "2xlarge"),
        }.items()
        for size in sizes
    },
}
"""GPUs and EFA devices per instance (Trainium types are left out: the trainer runs on CUDA
or CPU)."""


def resources(instance_type: str) -> Resources | None:
    """What ``instance_type`` offers, or None when the table does not know it."""
    return INSTANCE_RESOURCES.get(instance_type)


def job_cost(
    seconds: int, scope: Mapping[str, str], region: str, time: datetime
) -> CostEvent | None:
    """The cost event of a finished job that held its nodes ``seconds``, labelled as the
    job's share of the cluster's time (None when the instance has no price)."""
    cost = PRICES.job_cost(seconds=seconds, scope=scope, region=region, time=time)
    if cost is None:
        return None
    return cost.model_copy(update={"basis": f"the job's share of the cluster's time: {cost.basis}"})
