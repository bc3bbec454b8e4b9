"""The documented limits of every request a plan holds, checked before anything is sent.

Two kinds of limit, each checked here and nowhere else:

- **The service model's.** botocore ships each service's model (the one its clients are
  built from, readable offline): for every member of an operation's input, whether it is
  required, its type, its length or value range, its pattern and its enumeration.
  :func:`model_violations` walks a request body along its operation's input shape and
  reports each member that breaks one. botocore's own client-side validation checks only
  required members, types and minimums, so a request it lets through can still be
  refused by the service; this checks the rest.
- **The prose's.** Limits the API references state only in words (the relation between
  MaxRuntimeInSeconds and MaxWaitTimeInSeconds, the 10 tags of an S3 object, the 32 KB of
  a container's environment...), each in its own check below with its source beside it.

:func:`violations` runs both on one planned request. Placeholders (``${run_key}``,
``${endpoint}``...) are filled with the longest values they can take before a check, by
the caller, so a limit holds for every value the placeholder can stand for.

The table of every limit checked, with its source, is in docs/providers/sagemaker.md.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

import regex  # type: ignore[import-untyped]  # no stubs; Java-style \p{..} classes

from tunefleet_sagemaker import pricing

__all__ = [
    "MAX_RUNTIME_SECONDS",
    "MAX_S3_OBJECT_BYTES",
    "MAX_S3_PARTS",
    "MAX_S3_PART_BYTES",
    "MIN_S3_PART_BYTES",
    "Violation",
    "kms_key_violations",
    "model_violations",
    "service_model",
    "upload_violations",
    "violations",
]

MODEL_SOURCE = "botocore's {service} service model ({version}), shape {shape}"


@dataclass(frozen=True)
class Violation:
    """A member of a planned request that the service would refuse."""

    path: str
    """Where in the request: ``ResourceConfig.VolumeKmsKeyId``, ``Tags[3].Key``."""
    problem: str
    source: str
    """The model shape or the documentation page the limit comes from."""

    @property
    def reason(self) -> str:
        return f"{self.problem} ({self.source})"


def service_model(service: str) -> Any:
    """botocore's model of ``service`` (a ``botocore.model.ServiceModel``): read from the
    botocore package, no network, no credentials. See :func:`_service_data`."""
    import botocore.model

    return botocore.model.ServiceModel(_service_data(service), service_name=service)


@functools.cache
def _service_data(service: str) -> dict[str, Any]:
    """The JSON of botocore's model of ``service``, read by botocore's loader as a session's
    ``get_service_model`` reads it (the latest API version, the SDK's extras merged, models
    on the data path (:func:`_data_path`) and under ``~/.aws/models`` first) without a
    session, whose set-up adds about 90 ms and nothing to the model."""
    import botocore.loaders

    loader = botocore.loaders.create_loader(_data_path())
    return dict(loader.load_service_model(service, "service-2"))


def _data_path() -> str | None:
    """The extra model folders a botocore session would search (its ``data_path``
    variable): ``AWS_DATA_PATH``, else ``data_path`` in the active profile of the shared
    config file (``AWS_CONFIG_FILE``, default ``~/.aws/config``; the profile named by
    ``AWS_DEFAULT_PROFILE``, then ``AWS_PROFILE``, else ``default``), as
    ``botocore.configprovider`` orders them. A config file that is missing, unreadable or
    malformed names none: the SDK reports it when the run calls AWS."""
    if "AWS_DATA_PATH" in os.environ:
        return os.environ["AWS_DATA_PATH"]
    import botocore.configloader
    import botocore.exceptions

    profile = os.environ.get("AWS_DEFAULT_PROFILE") or os.environ.get("AWS_PROFILE") or "default"
    try:
        profiles = botocore.configloader.load_config(
            os.environ.get("AWS_CONFIG_FILE", "~/.aws/config")
        )["profiles"]
    except (botocore.exceptions.BotoCoreError, OSError, UnicodeDecodeError):
        return None
    value = profiles.get(profile, {}).get("data_path")
    return value if isinstance(value, str) else None


def _botocore_version() -> str:
    import botocore

    return str(botocore.__version__)


# What a plan reads of a model, cached -------------------------------------------------------

_SLICE_FORMAT = 1
"""The layout of a cached slice; a new layout ignores the old ones."""
_MAX_SLICES = 256
"""Slices kept (a few to a few hundred KB each); the oldest beyond this are removed."""


@dataclass(frozen=True)
class _Slice:
    """What a plan checks of one operation: the service's metadata and every shape its
    input reaches, as botocore's model JSON has them."""

    service: str
    metadata: Mapping[str, Any]
    shapes: Mapping[str, Any]
    input: str | None
    """The input shape's name; None for an operation without input."""

    def shape(self, name: str) -> _Shape:
        return _Shape(self, name)


class _Shape:
    """One shape of a botocore model's JSON, read as ``botocore.model.Shape`` reads it: the
    constraints (min, max, pattern, enum, union, sensitive) are the shape's own, and a
    member's reference names the shape it has."""

    def __init__(self, model: _Slice, name: str) -> None:
        self.name = name
        self.metadata: Mapping[str, Any] = model.shapes[name]
        self._model = model

    @property
    def type_name(self) -> str:
        return str(self.metadata["type"])

    @property
    def members(self) -> dict[str, _Shape]:
        members = self.metadata.get("members", {})
        return {name: self._model.shape(ref["shape"]) for name, ref in members.items()}

    @property
    def required_members(self) -> list[str]:
        return list(self.metadata.get("required", []))

    @property
    def member(self) -> _Shape:
        return self._model.shape(self.metadata["member"]["shape"])

    @property
    def key(self) -> _Shape:
        return self._model.shape(self.metadata["key"]["shape"])

    @property
    def value(self) -> _Shape:
        return self._model.shape(self.metadata["value"]["shape"])

    @property
    def enum(self) -> list[str]:
        return list(self.metadata.get("enum", []))


@functools.cache
def _input_model(service: str, operation: str) -> _Slice:
    """What :func:`model_violations` walks for ``operation``: a slice of botocore's model.

    Reading the whole model costs a plan 60-80 ms for SageMaker (a few MB of JSON, of which
    a plan checks a handful of operations), and importing the loader 80 ms more. So each
    slice is kept in tunefleet's cache (``$TUNEFLEET_CACHE_DIR/botocore``), named by what
    it is made from (:func:`_slice_key`): another botocore, or any change to a model file
    of the service, reads the model again.
    """
    from tunefleet.kit.cache import cache_root, prune, read_entry, write_entry

    key = _slice_key(service, operation)
    folder = cache_root() / "botocore"
    entry = read_entry(folder / f"{key}.json") if key is not None else None
    if entry is None or not _is_slice(entry):
        entry = _slice_of(_service_data(service), operation)
        if key is not None:
            write_entry(folder / f"{key}.json", entry)
            prune(folder, "*.json", _MAX_SLICES)
    return _Slice(service, entry["metadata"], entry["shapes"], entry["input"])


def _slice_of(data: Mapping[str, Any], operation: str) -> dict[str, Any]:
    """The metadata of model ``data`` and the shapes ``operation``'s input reaches."""
    found = data["operations"].get(operation)
    if found is None:
        raise KeyError(f"botocore's model has no operation {operation!r}")
    root = found.get("input", {}).get("shape")
    shapes: dict[str, Any] = {}
    pending = [root] if root is not None else []
    while pending:
        name = pending.pop()
        if name in shapes:
            continue
        spec = shapes[name] = data["shapes"][name]
        refs = [
            *spec.get("members", {}).values(),
            *(spec.get(k) for k in ("member", "key", "value")),
        ]
        pending += [ref["shape"] for ref in refs if ref]
    return {"format": _SLICE_FORMAT, "metadata": data["metadata"], "input": root, "shapes": shapes}


def _is_slice(entry: Mapping[str, Any]) -> bool:
    shapes, root = entry.get("shapes"), entry.get("input")
    return (
        entry.get("format") == _SLICE_FORMAT
        and isinstance(entry.get("metadata"), dict)
        and isinstance(shapes, dict)
        and (root is None or root in shapes)
    )


def _slice_key(service: str, operation: str) -> str | None:
    """A name for the slice of ``operation``: botocore's version, the search path its
    loader uses, and every model file of ``service`` on it (``service-2*``: the model and
    its extras, with size and modification time). None when a folder cannot be read."""
    import botocore

    extra = _data_path()
    paths = (
        [os.path.expanduser(os.path.expandvars(p)) for p in extra.split(os.pathsep)]
        if extra
        else []
    )
    paths += [
        os.path.join(os.path.expanduser("~"), ".aws", "models"),
        os.path.join(os.path.dirname(botocore.__file__), "data"),
    ]
    files = []
    try:
        for base in paths:
            folder = os.path.join(base, service)
            if not os.path.isdir(folder):
                continue
            versions = sorted(
                v for v in os.listdir(folder) if os.path.isdir(os.path.join(folder, v))
            )
            for version in versions:
                with os.scandir(os.path.join(folder, version)) as entries:
                    for item in sorted(entries, key=lambda e: e.name):
                        if item.name.startswith("service-2"):
                            info = item.stat()
                            files.append([item.path, info.st_size, info.st_mtime_ns])
    except OSError:
        return None
    basis = [_SLICE_FORMAT, botocore.__version__, service, operation, paths, files]
    return hashlib.sha256(json.dumps(basis).encode()).hexdigest()


# The service model -----------------------------------------------------------------------

_SURROGATE_PAIR = re.compile(r"\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})", re.IGNORECASE)


def _python_pattern(pattern: str) -> str:
    r"""A model pattern for the ``regex`` module. The models' patterns are Java regular
    expressions: ``\p{L}``-style classes (which ``regex`` reads as Java does) and
    characters beyond the BMP written as UTF-16 surrogate pairs (``\uD800\uDC00``), which
    become the code point they stand for."""

    def code_point(match: re.Match[str]) -> str:
        high, low = int(match.group(1), 16), int(match.group(2), 16)
        return f"\\U{0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00):08X}"

    return _SURROGATE_PAIR.sub(code_point, pattern)


@functools.cache
def _compiled(pattern: str) -> Any:
    return regex.compile(_python_pattern(pattern))


def _matches(pattern: str, value: str) -> bool:
    # The whole value must match: the services validate a member against its pattern as a
    # whole. SageMaker refuses the model name 'ENTER MODEL NAME' for the pattern
    # ^[a-zA-Z0-9](-*[a-zA-Z0-9])*, which a search would accept at its first word
    # (https://github.com/aws/amazon-sagemaker-examples/issues/2228: "Member must satisfy
    # regular expression pattern").
    return _compiled(pattern).fullmatch(value) is not None


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return repr(text if len(text) <= 80 else text[:77] + "...")


def _type_problem(shape: Any, value: Any) -> str | None:
    """What is wrong with ``value``'s type for ``shape``, or None."""
    kind = shape.type_name
    expected: tuple[type, ...]
    if kind in {"structure", "map"}:
        expected = (dict,)
    elif kind == "list":
        expected = (list, tuple)
    elif kind == "string":
        expected = (str,)
    elif kind in {"integer", "long"}:
        expected = (int,)
    elif kind in {"float", "double"}:
        expected = (int, float)
    elif kind == "boolean":
        expected = (bool,)
    elif kind == "blob":
        expected = (bytes, bytearray, str)
    elif kind == "timestamp":
        expected = (datetime, str, int, float)
    else:
        return None
    if isinstance(value, bool) and kind != "boolean":
        return f"is a boolean, not a {kind}"
    if not isinstance(value, expected):
        return f"is a {type(value).__name__}, not a {kind}"
    return None


class _Walk:
    """One request body walked along its operation's input shape."""

    def __init__(self, model: _Slice) -> None:
        self.model = model
        self.found: list[Violation] = []

    def source(self, shape: Any) -> str:
        return MODEL_SOURCE.format(
            service=self.model.service,
            version=f"{self.model.metadata.get('apiVersion')}, botocore {_botocore_version()}",
            shape=shape.name,
        )

    def report(self, path: str, problem: str, shape: Any) -> None:
        self.found.append(Violation(path or "(request)", problem, self.source(shape)))

    def walk(self, shape: Any, value: Any, path: str) -> None:
        problem = _type_problem(shape, value)
        if problem is not None:
            self.report(path, problem, shape)
            return
        kind = shape.type_name
        if kind == "structure":
            self.structure(shape, value, path)
        elif kind == "list":
            self.sized(shape, len(value), "item(s)", path)
            for index, item in enumerate(value):
                self.walk(shape.member, item, f"{path}[{index}]")
        elif kind == "map":
            self.sized(shape, len(value), "entr(y/ies)", path)
            for key, item in value.items():
                self.walk(shape.key, key, f"{path} key {key!r}")
                self.walk(shape.value, item, f"{path}.{key}")
        elif kind == "string":
            self.string(shape, value, path)
        elif kind in {"integer", "long", "float", "double"}:
            self.ranged(shape, value, path)
        elif kind == "blob":
            size = len(value.encode() if isinstance(value, str) else value)
            self.sized(shape, size, "byte(s)", path)

    def structure(self, shape: Any, value: Mapping[str, Any], path: str) -> None:
        prefix = f"{path}." if path else ""
        for name in shape.required_members:
            if name not in value:
                self.report(f"{prefix}{name}", "is required but missing", shape)
        for name, item in value.items():
            member = shape.members.get(name)
            if member is None:
                self.report(f"{prefix}{name}", f"is not a member of {shape.name}", shape)
            else:
                self.walk(member, item, f"{prefix}{name}")
        if shape.metadata.get("union") and len(value) != 1:
            self.report(path, f"must set exactly one member of {shape.name}", shape)

    def sized(self, shape: Any, size: int, unit: str, path: str) -> None:
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        if low is not None and size < low:
            self.report(path, f"has {size} {unit}; at least {low} are needed", shape)
        if high is not None and size > high:
            self.report(path, f"has {size} {unit}; at most {high} are allowed", shape)

    def string(self, shape: Any, value: str, path: str) -> None:
        shown = "the value" if shape.metadata.get("sensitive") else _shown(value)
        enum = shape.enum
        if enum and value not in enum:
            self.report(
                path,
                f"{shown} is not one of the {len(enum)} values the model lists "
                "(a value newer than the installed botocore needs a newer boto3)",
                shape,
            )
            return
        self.sized(shape, len(value), "character(s)", path)
        pattern = shape.metadata.get("pattern")
        if pattern is not None and not _matches(pattern, value):
            self.report(path, f"{shown} does not match the pattern {pattern}", shape)

    def ranged(self, shape: Any, value: float, path: str) -> None:
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        if low is not None and value < low:
            self.report(path, f"is {value}; the minimum is {low}", shape)
        if high is not None and value > high:
            self.report(path, f"is {value}; the maximum is {high}", shape)


def model_violations(service: str, operation: str, body: Mapping[str, Any]) -> list[Violation]:
    """Each member of ``body`` that breaks what botocore's model of ``service`` declares
    for ``operation``'s input: required members, types, lengths, ranges, patterns, enums,
    and members the operation does not have."""
    model = _input_model(service, operation)
    walk = _Walk(model)
    if model.input is not None:
        walk.walk(model.shape(model.input), dict(body), "")
    return walk.found


# The prose ---------------------------------------------------------------------------------

STOPPING_CONDITION = (
    "https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_StoppingCondition.html"
)
RESOURCE_CONFIG = (
    "https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ResourceConfig.html"
)
CREATE_ENDPOINT_CONFIG = (
    "https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateEndpointConfig.html"
)
CONTAINER_DEFINITION = (
    "https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ContainerDefinition.html"
)
UPDATE_WEIGHTS = (
    "https://docs.aws.amazon.com/sagemaker/latest/APIReference/"
    "API_UpdateEndpointWeightsAndCapacities.html"
)
SAGEMAKER_TAG = "https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_Tag.html"
S3_OBJECT_TAGS = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-tagging.html"
S3_TAG = "https://docs.aws.amazon.com/AmazonS3/latest/API/API_control_Tag.html"
S3_OBJECT_KEY = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-keys.html"
S3_KMS = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html"
S3_MULTIPART = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html"
AWS_TAGS = "https://docs.aws.amazon.com/tag-editor/latest/userguide/tagging.html"
CLOUDWATCH_TAGS = (
    "https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html"
)

MAX_RUNTIME_SECONDS = 28 * 24 * 3600
"""StoppingCondition.MaxRuntimeInSeconds: "The maximum value is 28 days" (StoppingCondition;
the model declares only the minimum)."""
MAX_ENVIRONMENT_ENTRY_BYTES = 1024
MAX_ENVIRONMENT_BYTES = 32 * 1024
MAX_S3_OBJECT_TAGS = 10
MAX_S3_TAG_KEY = 128
MAX_S3_TAG_VALUE = 256
MAX_S3_KEY_BYTES = 1024
_MiB = 1 << 20
MIN_S3_PART_BYTES = 5 * _MiB
MAX_S3_PART_BYTES = 5 * 1024 * _MiB
"""Amazon S3 multipart upload limits: "Part size: 5 MiB to 5 GiB. There is no minimum size
limit on the last part of your multipart upload." """
MAX_S3_PARTS = 10_000
"""Amazon S3 multipart upload limits: "Maximum number of parts per upload: 10,000"."""
MAX_S3_OBJECT_BYTES = MAX_S3_PARTS * MAX_S3_PART_BYTES
"""Amazon S3 multipart upload limits: "Maximum object size: 48.8 TiB", that is 10,000 parts
of 5 GiB (the page said 5 TiB until S3 raised it to 50 TB)."""
MAX_RESOURCE_TAGS = 50
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 256
TAG_CHARACTERS = r"[\p{L}\p{Z}\p{N}_.:/=+\-@]*"
"""Letters, numbers and spaces representable in UTF-8, and ``_ . : / = + - @``: the common
tag character set (Tagging your AWS resources, "Tag naming limits and requirements"; the
pattern of S3's Tag and SageMaker's Tag shapes)."""

KEY_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
"""A KMS key id (https://docs.aws.amazon.com/kms/latest/developerguide/concepts.html#key-id);
multi-Region keys add an ``mrk-`` prefix and 32 hex digits, see :data:`MRK_ID`."""
MRK_ID = re.compile(r"^mrk-[0-9a-f]{32}$")
KEY_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):kms:(?P<region>[a-z0-9-]+):(?P<account>[0-9]{12}):"
    r"key/(?P<id>[A-Za-z0-9-]+)$"
)


def _utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _tag_violations(
    tags: Iterable[tuple[str, str]],
    path: str,
    *,
    most: int,
    key_length: int,
    value_length: int,
    source: str,
    length: Callable[[str], int] = len,
    unit: str = "characters",
) -> list[Violation]:
    """The limits every AWS tag set shares: how many, unique keys, lengths, characters, and
    no ``aws:`` prefix."""
    tags = list(tags)
    found: list[Violation] = []
    if len(tags) > most:
        found.append(Violation(path, f"{len(tags)} tags; at most {most} are allowed", source))
    keys = [key for key, _ in tags]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        found.append(Violation(path, f"tag key(s) {repeated} given twice", source))
    allowed = regex.compile(TAG_CHARACTERS)
    for key, value in tags:
        if not 1 <= length(key) <= key_length:
            found.append(
                Violation(
                    f"{path} {key!r}",
                    f"the key is {length(key)} {unit}; 1 to {key_length} are allowed",
                    source,
                )
            )
        if length(value) > value_length:
            found.append(
                Violation(
                    f"{path} {key!r}",
                    f"the value is {length(value)} {unit}; at most {value_length} are allowed",
                    source,
                )
            )
        for part, text in (("key", key), ("value", value)):
            if allowed.fullmatch(text) is None:
                found.append(
                    Violation(
                        f"{path} {key!r}",
                        f"the {part} {text!r} holds a character outside letters, numbers, "
                        "spaces and _ . : / = + - @",
                        source,
                    )
                )
        if key.lower().startswith("aws:"):
            found.append(Violation(f"{path} {key!r}", "the aws: prefix is AWS's own", source))
    return found


def kms_key_violations(
    key: str, path: str, region: str | None, *, source: str = S3_KMS
) -> list[Violation]:
    """A KMS key given by a key id or a key ARN in ``region``.

    - Aliases: S3 records and returns the key's ARN, whatever named it (so a staged object
      can be checked against the key only by id or ARN), and ResourceConfig.VolumeKmsKeyId
      takes only "KMS Key ID" or "Amazon Resource Name (ARN) of a KMS Key" (ResourceConfig).
      Plan has no credentials to resolve an alias, so an alias is refused with the way to
      find the key's ARN.
    - Region: "the KMS key must be in the same Region as the bucket" (S3, Using server-side
      encryption with AWS KMS keys); SageMaker jobs and endpoints use keys of their own
      region as well.
    """
    if KEY_ID.match(key) or MRK_ID.match(key):
        return []
    arn = KEY_ARN.match(key)
    if arn is None:
        return [
            Violation(
                path,
                f"{key!r} is not a key id or a key ARN (an alias?): S3 reports the key's ARN "
                "whatever named it, and VolumeKmsKeyId takes only a key id or ARN; give the "
                f"key's ARN (aws kms describe-key --key-id {key} --query KeyMetadata.Arn)",
                f"{RESOURCE_CONFIG}; {S3_KMS}",
            )
        ]
    if region is not None and arn.group("region") != region:
        return [
            Violation(
                path,
                f"the key is in {arn.group('region')}, not in {region} where the bucket, the "
                "job and the endpoint are; a KMS key serves its own region only",
                source,
            )
        ]
    return []


def _training_job(body: Mapping[str, Any], region: str | None) -> list[Violation]:
    found: list[Violation] = []
    stopping = body.get("StoppingCondition", {})
    runtime = stopping.get("MaxRuntimeInSeconds")
    wait = stopping.get("MaxWaitTimeInSeconds")
    # StoppingCondition: "The maximum value is 28 days."
    if runtime is not None and runtime > MAX_RUNTIME_SECONDS:
        found.append(
            Violation(
                "StoppingCondition.MaxRuntimeInSeconds",
                f"{runtime} s ({runtime / 3600:g} h); at most {MAX_RUNTIME_SECONDS} s (28 days)",
                STOPPING_CONDITION,
            )
        )
    # StoppingCondition.MaxWaitTimeInSeconds: "It must be equal to or greater than
    # MaxRuntimeInSeconds", and it is the time "a managed Spot training job" has: spot only.
    spot = bool(body.get("EnableManagedSpotTraining"))
    if wait is not None and runtime is not None and wait < runtime:
        found.append(
            Violation(
                "StoppingCondition.MaxWaitTimeInSeconds",
                f"{wait} s is shorter than MaxRuntimeInSeconds ({runtime} s); it must be at "
                "least as long",
                STOPPING_CONDITION,
            )
        )
    if wait is not None and not spot:
        found.append(
            Violation(
                "StoppingCondition.MaxWaitTimeInSeconds",
                "is set for a job without managed spot training",
                STOPPING_CONDITION,
            )
        )
    if spot and wait is None:
        found.append(
            Violation(
                "StoppingCondition.MaxWaitTimeInSeconds",
                "managed spot training needs it",
                "https://docs.aws.amazon.com/sagemaker/latest/dg/model-managed-spot-training.html",
            )
        )
    resources = body.get("ResourceConfig", {})
    volume_key = resources.get("VolumeKmsKeyId")
    if volume_key is not None:
        # ResourceConfig.VolumeKmsKeyId: "You can't request a VolumeKmsKeyId when using an
        # instance type with local storage."
        instance = str(resources.get("InstanceType", ""))
        if pricing.has_instance_storage(instance):
            found.append(
                Violation(
                    "ResourceConfig.VolumeKmsKeyId",
                    f"{instance} trains on local NVMe instance storage, for which SageMaker "
                    "refuses a volume key",
                    RESOURCE_CONFIG,
                )
            )
        found += kms_key_violations(volume_key, "ResourceConfig.VolumeKmsKeyId", region)
    output_key = body.get("OutputDataConfig", {}).get("KmsKeyId")
    if output_key is not None:
        found += kms_key_violations(output_key, "OutputDataConfig.KmsKeyId", region)
    found += _sagemaker_tags(body)
    return found


def _sagemaker_tags(body: Mapping[str, Any]) -> list[Violation]:
    # Tag.Key: "Tag keys must be unique per resource." (count, lengths and characters are
    # the model's, checked by model_violations)
    tags = [(tag.get("Key", ""), tag.get("Value", "")) for tag in body.get("Tags", [])]
    keys = [key for key, _ in tags]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        return [Violation("Tags", f"tag key(s) {repeated} given twice", SAGEMAKER_TAG)]
    return []


def _model(body: Mapping[str, Any]) -> list[Violation]:
    found: list[Violation] = []
    containers = [body.get("PrimaryContainer") or {}, *body.get("Containers", [])]
    total = 0
    for index, container in enumerate(containers):
        path = "PrimaryContainer.Environment" if index == 0 else f"Containers[{index - 1}]"
        for key, value in (container.get("Environment") or {}).items():
            # ContainerDefinition.Environment: "The maximum length of each key and value in
            # the Environment map is 1024 bytes. The maximum length of all keys and values
            # in the map, combined, is 32 KB." (and for all containers of a model together)
            for part, text in (("key", key), ("value", value)):
                size = len(str(text).encode())
                total += size
                if size > MAX_ENVIRONMENT_ENTRY_BYTES:
                    found.append(
                        Violation(
                            f"{path}.{key}",
                            f"the {part} is {size} bytes; at most "
                            f"{MAX_ENVIRONMENT_ENTRY_BYTES} are allowed",
                            CONTAINER_DEFINITION,
                        )
                    )
    if total > MAX_ENVIRONMENT_BYTES:
        found.append(
            Violation(
                "PrimaryContainer.Environment",
                f"the keys and values are {total} bytes together; at most "
                f"{MAX_ENVIRONMENT_BYTES} are allowed",
                CONTAINER_DEFINITION,
            )
        )
    found += _sagemaker_tags(body)
    return found


def _endpoint_config(body: Mapping[str, Any], region: str | None) -> list[Violation]:
    found: list[Violation] = []
    key = body.get("KmsKeyId")
    if key is not None:
        # CreateEndpointConfig.KmsKeyId: "You can't request a KmsKeyId when using an
        # instance type with local storage ... the call to CreateEndpointConfig fails" (earlier
        # versions of the reference; today's says the key "does not encrypt instance local
        # storage"); AWS's SDK omits it for these types either way.
        for index, variant in enumerate(body.get("ProductionVariants", [])):
            instance = str(variant.get("InstanceType", ""))
            if pricing.has_instance_storage(instance):
                found.append(
                    Violation(
                        "KmsKeyId",
                        f"ProductionVariants[{index}] serves on {instance}, whose local NVMe "
                        "storage a KMS key cannot encrypt",
                        CREATE_ENDPOINT_CONFIG,
                    )
                )
        found += kms_key_violations(key, "KmsKeyId", region)
    capture_key = (body.get("DataCaptureConfig") or {}).get("KmsKeyId")
    if capture_key is not None:
        found += kms_key_violations(capture_key, "DataCaptureConfig.KmsKeyId", region)
    found += _sagemaker_tags(body)
    return found


def _update_weights(body: Mapping[str, Any]) -> list[Violation]:
    # UpdateEndpointWeightsAndCapacities "Updates variant weight of one or more variants
    # associated with an existing endpoint, or capacity of one variant". Weights themselves
    # have no cap: they are relative ("the ratio of the VariantWeight to the sum of all
    # VariantWeight values", ProductionVariant.InitialVariantWeight; the model bounds
    # VariantWeight below by 0 only), so a canary may take any share of the traffic.
    sized = [
        str(entry.get("VariantName"))
        for entry in body.get("DesiredWeightsAndCapacities", [])
        if "DesiredInstanceCount" in entry
    ]
    if len(sized) > 1:
        return [
            Violation(
                "DesiredWeightsAndCapacities",
                f"changes the capacity of {len(sized)} variants ({', '.join(sized)}); one "
                "request changes the capacity of one",
                UPDATE_WEIGHTS,
            )
        ]
    return []


def _put_object(body: Mapping[str, Any], region: str | None) -> list[Violation]:
    found: list[Violation] = []
    key = str(body.get("Key", ""))
    # "The name for a key is a sequence of Unicode characters whose UTF-8 encoding is at
    # most 1,024 bytes long." (Naming Amazon S3 objects)
    if len(key.encode()) > MAX_S3_KEY_BYTES:
        found.append(
            Violation(
                "Key",
                f"{len(key.encode())} bytes; at most {MAX_S3_KEY_BYTES}",
                S3_OBJECT_KEY,
            )
        )
    tagging = body.get("Tagging")
    if tagging is not None:
        # "You can associate up to 10 tags with an object. Tags that are associated with an
        # object must have unique tag keys. A tag key can be up to 128 Unicode characters in
        # length, and tag values can be up to 256 Unicode characters in length. Amazon S3
        # object tags are internally represented in UTF-16." (Categorizing your objects
        # using tags); characters: S3's Tag shape ^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$.
        found += _tag_violations(
            parse_qsl(str(tagging), keep_blank_values=True),
            "Tagging",
            most=MAX_S3_OBJECT_TAGS,
            key_length=MAX_S3_TAG_KEY,
            value_length=MAX_S3_TAG_VALUE,
            source=f"{S3_OBJECT_TAGS}; {S3_TAG}",
            length=_utf16_length,
            unit="UTF-16 code units",
        )
    kms_key = body.get("SSEKMSKeyId")
    if kms_key is not None:
        found += kms_key_violations(str(kms_key), "SSEKMSKeyId", region)
    return found


def _scalable_target(body: Mapping[str, Any]) -> list[Violation]:
    # RegisterScalableTarget.Tags: the model bounds lengths only; "You cannot have more than
    # one tag on a scalable target with the same tag key", and the common tag limits
    # apply: 50 per resource, the common characters (Tagging your AWS resources).
    tags = body.get("Tags")
    if tags is None:
        return []
    return _tag_violations(
        dict(tags).items(),
        "Tags",
        most=MAX_RESOURCE_TAGS,
        key_length=MAX_TAG_KEY,
        value_length=MAX_TAG_VALUE,
        source=AWS_TAGS,
    )


def _alarm(body: Mapping[str, Any]) -> list[Violation]:
    # PutMetricAlarm.Tags: "You can associate as many as 50 tags with an alarm."
    tags = [(tag.get("Key", ""), tag.get("Value", "")) for tag in body.get("Tags", [])]
    return _tag_violations(
        tags,
        "Tags",
        most=MAX_RESOURCE_TAGS,
        key_length=MAX_TAG_KEY,
        value_length=MAX_TAG_VALUE,
        source=CLOUDWATCH_TAGS,
    )


def upload_violations(size: int, threshold: int, part_bytes: int) -> list[Violation]:
    """The limits S3 sets on uploading ``size`` bytes as boto3's transfer manager does: one
    PutObject below ``threshold`` bytes, else a multipart upload in parts of ``part_bytes``
    (the last one shorter). Checked before anything is sent: S3 would refuse part 10,001
    only after 10,000 parts had gone up, and boto3 would silently double a part size that
    needs more parts than that (s3transfer's ChunksizeAdjuster), overriding the option."""
    found: list[Violation] = []
    if size > MAX_S3_OBJECT_BYTES:
        found.append(
            Violation(
                "(object)",
                f"{size} bytes; an S3 object holds at most {MAX_S3_OBJECT_BYTES} "
                f"({MAX_S3_PARTS} parts of {MAX_S3_PART_BYTES})",
                S3_MULTIPART,
            )
        )
        return found
    if size < threshold:
        return found  # one PutObject: threshold <= the largest part, 5 GiB, PutObject's own
    if not MIN_S3_PART_BYTES <= part_bytes <= MAX_S3_PART_BYTES:
        found.append(
            Violation(
                "UploadPart.Body",
                f"parts of {part_bytes} bytes; {MIN_S3_PART_BYTES} to {MAX_S3_PART_BYTES} "
                "are allowed",
                S3_MULTIPART,
            )
        )
    parts = -(-size // part_bytes)
    if parts > MAX_S3_PARTS:
        fits = -(-size // (MAX_S3_PARTS * _MiB))
        found.append(
            Violation(
                "UploadPart.PartNumber",
                f"{size} bytes in parts of {part_bytes} are {parts} parts; at most "
                f"{MAX_S3_PARTS} are allowed (parts of {fits} MiB or more fit)",
                S3_MULTIPART,
            )
        )
    return found


def prose_violations(
    operation: str, body: Mapping[str, Any], region: str | None
) -> list[Violation]:
    """The limits of ``operation`` stated only in its documentation."""
    if operation == "CreateTrainingJob":
        return _training_job(body, region)
    if operation == "CreateModel":
        return _model(body)
    if operation == "CreateEndpointConfig":
        return _endpoint_config(body, region)
    if operation == "CreateEndpoint":
        return _sagemaker_tags(body)
    if operation == "UpdateEndpointWeightsAndCapacities":
        return _update_weights(body)
    if operation == "PutObject":
        return _put_object(body, region)
    if operation == "RegisterScalableTarget":
        return _scalable_target(body)
    if operation == "PutMetricAlarm":
        return _alarm(body)
    return []


def violations(
    service: str, operation: str, body: Mapping[str, Any], region: str | None
) -> list[Violation]:
    """Every limit of ``operation`` that ``body`` breaks: the model's, then the prose's."""
    return model_violations(service, operation, body) + prose_violations(operation, body, region)
