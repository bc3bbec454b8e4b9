"""Names that end up in cloud resource names, object keys, tags and paths.

Every such name is validated once, here, against the intersection of what the clouds
accept, so a spec that loads can be turned into resource names on any provider without
escaping: run and target names fit SageMaker job names, Azure ML job names and Vertex
display names once a run-key suffix is added; tag keys and values fit AWS, Azure and GCP
label rules after lower-casing. Providers with stricter rules check in their plan.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, StringConstraints

# Lowercase letters, digits and hyphens; starts with a letter, ends with a letter or digit.
# 40 characters leaves room for a "-<12 hex>" run-key suffix inside the 63-character limit
# that SageMaker, Kubernetes (HyperPod) and GCP labels share.
NAME_PATTERN = r"^[a-z](?:[a-z0-9-]{0,38}[a-z0-9])?$"
PROVIDER_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
REGION_PATTERN = r"^[a-z0-9][a-z0-9-]{0,39}$"
REGION_GLOB_PATTERN = r"^[a-z0-9*?\[\]-]{1,40}$"
INSTANCE_TYPE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
TAG_KEY_PATTERN = r"^[A-Za-z][A-Za-z0-9_.:/=+@-]{0,62}$"
TAG_VALUE_PATTERN = r"^[A-Za-z0-9_.:/=+@ -]{0,256}$"

_RESERVED_TAG_PREFIXES = ("aws:", "azure", "microsoft", "windows", "goog", "google", "tunefleet:")


def _not_reserved_tag(key: str) -> str:
    lowered = key.lower()
    for prefix in _RESERVED_TAG_PREFIXES:
        if lowered.startswith(prefix):
            raise ValueError(
                f"tag keys may not start with {prefix!r} (reserved by a cloud or tunefleet)"
            )
    return key


ResourceName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
"""A run, target or endpoint name: lowercase letters, digits and hyphens, 1-40 characters."""

ProviderName = Annotated[str, StringConstraints(pattern=PROVIDER_NAME_PATTERN)]
Region = Annotated[str, StringConstraints(pattern=REGION_PATTERN)]
RegionGlob = Annotated[str, StringConstraints(pattern=REGION_GLOB_PATTERN)]
InstanceType = Annotated[str, StringConstraints(pattern=INSTANCE_TYPE_PATTERN)]
TagKey = Annotated[
    str, StringConstraints(pattern=TAG_KEY_PATTERN), AfterValidator(_not_reserved_tag)
]
TagValue = Annotated[str, StringConstraints(pattern=TAG_VALUE_PATTERN)]
