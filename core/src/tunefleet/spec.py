"""RunSpec: what the user wants, described once for every cloud.

A spec is a YAML file validated by the pydantic models below. Unknown keys are errors (with
a suggestion when one is close), and every error names the file, the line and the key path:
``spec.yaml:14 targets[0].compute.instance_count: must be >= 1``. Numbers are strict: a
boolean is never an integer, a string never a number, and ``.inf`` or ``.nan`` never a
value; a local path that names a directory, a FIFO or a device is refused where it is
written. The models hold no provider-specific knob: those live in each target's
``options``, which the target's provider validates with its own model at plan time. A
spec holds no secrets; keys and values that look like credentials are refused.

``load_spec`` is the entry point; ``published_schema()`` is the published JSON Schema.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

import tunefleet_trainer.config as trainer
from tunefleet._yaml import KeyPath, Positions, format_path, load_document
from tunefleet.errors import InputFileError, SpecError, SpecIssue
from tunefleet.names import (
    InstanceType,
    LocalFile,
    ProviderName,
    Region,
    RegionGlob,
    ResourceName,
    TagKey,
    TagValue,
    check_local_file,
    open_input,
    os_problem,
)
from tunefleet_trainer.config import Adapter, LoraSettings, Method

__all__ = [
    "AutoscalingSpec",
    "CanarySpec",
    "ComputeSpec",
    "DatasetSpec",
    "EndpointSpec",
    "EvaluationSpec",
    "Hyperparameters",
    "JudgeSpec",
    "LoraSettings",
    "MethodSpec",
    "PlacementPolicy",
    "RunSpec",
    "TargetSpec",
    "load_spec",
    "parse_spec",
]

MAX_SPEC_BYTES = 1 << 20

Metric = Literal[
    "exact_match",
    "token_f1",
    "rouge_l",
    "bleu",
    "macro_f1",
    "json_valid",
    "json_schema",
    "valid_loss",
    "llm_judge",
]
"""Scores an evaluation can compute (see docs/evaluation.md). Higher is better for all but
``valid_loss``; ``bleu`` is on sacreBLEU's 0-100 scale, the others from 0 to 1."""
LOWER_IS_BETTER: frozenset[str] = frozenset({"valid_loss"})
"""Metrics whose threshold is a maximum."""
METRIC_RANGES: dict[str, tuple[float, float | None]] = {
    "bleu": (0.0, 100.0),
    "valid_loss": (0.0, None),
}
"""Where a metric's values lie, where it is not 0 to 1 (None: unbounded)."""
SliceField = Annotated[
    str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,63}(\.[A-Za-z_][A-Za-z0-9_-]{0,63})?$")
]
"""A golden example's top-level key (``language``), or a key of one of its objects
(``metadata.language``)."""

# Where a dataset may live: a local path (relative to the spec file) or one of these URIs.
DATASET_URI_SCHEMES = frozenset({"s3", "gs", "az", "abfss", "azureml", "https"})


def _check_location(value: str, info: ValidationInfo) -> str:
    if not value or len(value) > 2048:
        raise ValueError("must be a path or URI of 1 to 2048 characters")
    if "\x00" in value:
        raise ValueError("must not contain a NUL byte")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("must not contain control characters")
    if "://" not in value:
        return check_local_file(value, info)
    scheme = urlsplit(value).scheme
    if scheme not in DATASET_URI_SCHEMES:
        allowed = ", ".join(f"{s}://" for s in sorted(DATASET_URI_SCHEMES))
        raise ValueError(f"URI scheme {scheme!r} is not supported (use a local path or {allowed})")
    return value


DatasetLocation = Annotated[str, AfterValidator(_check_location)]
"""A local path (relative to the spec file) or a cloud URI (s3://, gs://, az://, https://...).

A local path that exists must be a regular file (never a directory, FIFO or device); see
:data:`tunefleet.names.LocalFile`."""


def is_local(location: str) -> bool:
    """True if ``location`` is a path on this machine rather than a cloud URI."""
    return "://" not in location


class _Model(BaseModel):
    # Fields are documented by the docstring under them; those become the published
    # schema's descriptions in published_schema(), not at import (see tunefleet._schema).
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSpec(_Model):
    """The training data: chat-format JSONL (OpenAI's format, which every provider converts from)."""

    train: DatasetLocation
    """Training examples, one JSON object per line."""
    validation: DatasetLocation | None = None
    """Held-out examples for validation loss; optional."""


def _not_boolean(value: Any) -> Any:
    # `true == 1` in Python, so a Literal[1] would take it; a spec's numbers are never booleans.
    if isinstance(value, bool):
        raise ValueError(f"must be a number, not the boolean {str(value).lower()}")
    return value


def _dataset_shorthand(value: Any) -> Any:
    return {"train": value} if isinstance(value, str) else value


class MethodSpec(_Model):
    """How the model is trained."""

    type: Method = "supervised"
    """`supervised` (SFT on chat examples) or `dpo` (preference pairs, format `preference`)."""
    adapter: Adapter | None = None
    """`full`, `lora` or `qlora`; unset means the provider's default (hosted APIs choose)."""
    beta: float | None = Field(default=None, gt=0, le=10)
    """DPO only: how strongly the policy is kept near the reference model."""

    @field_validator("type", mode="before")
    @classmethod
    def _not_reinforcement(cls, value: Any) -> Any:
        if value == "reinforcement":
            raise ValueError(
                "reinforcement fine-tuning is not supported yet: it needs graders, which a "
                "spec cannot describe; use supervised or dpo"
            )
        return value

    @model_validator(mode="after")
    def _beta_only_for_dpo(self) -> MethodSpec:
        if self.beta is not None and self.type != "dpo":
            raise ValueError("beta applies only to method type 'dpo'")
        return self


def _method_shorthand(value: Any) -> Any:
    return {"type": value} if isinstance(value, str) else value


class Hyperparameters(trainer.Hyperparameters):
    """Training knobs in neutral units; each provider maps them to its own names.

    Unset values take the provider's default. A provider that cannot honour a value
    (a plain learning rate on the OpenAI API, say) fails the plan with its reason. The
    knobs are the trainer's (:class:`tunefleet_trainer.config.Hyperparameters`) plus what
    only hosted APIs take.
    """

    learning_rate_multiplier: float | None = Field(default=None, gt=0, le=100)
    """Scale of the provider's default learning rate (hosted APIs); exclusive with learning_rate."""

    @model_validator(mode="after")
    def _one_learning_rate(self) -> Hyperparameters:
        if self.learning_rate is not None and self.learning_rate_multiplier is not None:
            raise ValueError("set learning_rate or learning_rate_multiplier, not both")
        return self


class ComputeSpec(_Model):
    """The machines a target trains on."""

    instance_type: InstanceType | None = None
    """Provider-native machine type (ml.g5.2xlarge, Standard_NC24ads_A100_v4, a2-highgpu-1g)."""
    instance_count: int = Field(default=1, ge=1, le=512)
    """Machines; more than one trains with torch distributed across nodes."""
    spot: bool = False
    """Use spot / low-priority capacity; the trainer resumes from checkpoints after preemption."""
    max_runtime_hours: float | None = Field(default=None, gt=0, le=720)
    """Stop the job after this long; unset takes the provider's default."""
    volume_size_gb: int | None = Field(default=None, ge=1, le=16384)
    """Disk per machine for data and checkpoints."""


class TargetSpec(_Model):
    """One place the run may execute: a provider, a region, compute and provider options."""

    name: ResourceName | None = None
    """Defaults to the provider name; required when two targets share a provider."""
    provider: ProviderName
    """Installed provider name (`tunefleet providers` lists them)."""
    region: Region | None = None
    """Provider region (eu-west-1, westeurope, europe-west4); some providers take none."""
    compute: ComputeSpec = ComputeSpec()
    """Machines to train on."""
    options: dict[str, Any] = {}
    """Provider-specific settings, validated by the provider's own options model."""

    @property
    def key(self) -> str:
        """The target's name: ``name`` if given, else the provider's."""
        return self.name or self.provider


class PlacementPolicy(_Model):
    """Where the run may happen and what every resource must carry: the compliance contract.

    A requirement a provider cannot honour fails the plan with the reason; it is never dropped.
    """

    allowed_regions: list[RegionGlob] | None = None
    """Region globs (`eu-*`, `europe-west?`); unset allows any region."""
    require_private_network: bool = False
    """Training and serving traffic stays inside a private network the user names."""
    require_customer_managed_key: bool = False
    """Data at rest is encrypted with a key the user manages (KMS, Key Vault, Cloud KMS)."""
    required_tags: list[TagKey] = []
    """Tag keys every created resource must carry; each must be set in `tags`."""
    tags: dict[TagKey, TagValue] = {}
    """Tags applied to every created resource."""

    @model_validator(mode="after")
    def _required_tags_are_set(self) -> PlacementPolicy:
        missing = [key for key in self.required_tags if key not in self.tags]
        if missing:
            raise ValueError(
                f"required tag(s) {', '.join(map(repr, missing))} not set in placement.tags"
            )
        return self


class JudgeSpec(_Model):
    """The model that compares two answers side by side: a provider's model asked through
    its chat API, or the endpoint tunefleet serves for another run."""

    provider: ProviderName | None = None
    """Installed provider whose chat API asks ``model`` (openai, ...)."""
    model: str | None = Field(
        default=None, min_length=1, max_length=256, pattern=r"^[^\x00-\x1f]+$"
    )
    """The judge model's id at that provider (gpt-4o-2024-08-06)."""
    options: dict[str, Any] = {}
    """Provider options for reaching it (Azure's endpoint, say), as a target's options."""
    endpoint: str | None = Field(
        default=None, min_length=1, max_length=80, pattern=r"^[a-z0-9][a-z0-9-]*$"
    )
    """Instead: the run (id or name) whose endpoint tunefleet serves judges."""

    @model_validator(mode="after")
    def _one_judge(self) -> JudgeSpec:
        if self.endpoint is not None:
            if self.provider is not None or self.model is not None or self.options:
                raise ValueError("give either endpoint, or provider and model, not both")
        elif self.provider is None or self.model is None:
            raise ValueError("give provider and model (or endpoint)")
        return self


def _check_thresholds(thresholds: Mapping[Metric, float], where: str) -> None:
    for metric, value in thresholds.items():
        if not math.isfinite(value):
            raise ValueError(f"{where}{metric}: a threshold must be a finite number")
        low, high = METRIC_RANGES.get(metric, (0.0, 1.0))
        if value < low or (high is not None and value > high):
            span = f"{low:g} to {high:g}" if high is not None else f"at least {low:g}"
            raise ValueError(f"{where}{metric}: {value:g} is outside the metric's range ({span})")


class EvaluationSpec(_Model):
    """How the trained model is judged before it is served: define "good enough" before
    training, measure it on a golden set, and freeze deployment when a metric misses."""

    golden_set: DatasetLocation
    """Verified chat examples (200 to 500 is the usual size) whose last assistant turn is
    the expected answer; the messages before it are the question."""
    metrics: list[Metric] = Field(min_length=1)
    """Scores to compute on the golden set."""
    thresholds: dict[Metric, float] = {}
    """Minimum score per metric (maximum for valid_loss); a miss fails the evaluation."""
    slice_by: list[SliceField] = Field(default=[], max_length=8)
    """Example fields to score by as well (``language``, ``metadata.intent``): each value
    of a field is a slice with its own scores."""
    slice_thresholds: dict[SliceField, dict[str, dict[Metric, float]]] = {}
    """Thresholds per slice: field, then value (``*``: every value), then metric."""
    json_schema: LocalFile | None = None
    """JSON Schema the answers must conform to (metric json_schema), relative to the spec."""
    judge: JudgeSpec | None = None
    """The model that compares answers side by side; required by the llm_judge metric."""
    max_examples: int | None = Field(default=None, ge=1, le=100_000)
    """Evaluate on the first so many golden examples."""
    max_tokens: int = Field(default=256, ge=1, le=8192)
    """Longest answer generated per example (greedy decoding)."""
    block_deploy_on_failure: bool = True
    """Do not deploy a model that misses a threshold (`tunefleet deploy --force` overrides,
    audited with who and why)."""

    @model_validator(mode="after")
    def _consistent(self) -> EvaluationSpec:
        unknown = [m for m in self.thresholds if m not in self.metrics]
        if unknown:
            raise ValueError(f"thresholds for metrics not listed in metrics: {', '.join(unknown)}")
        _check_thresholds(self.thresholds, "thresholds.")
        for field, values in self.slice_thresholds.items():
            if field not in self.slice_by:
                raise ValueError(f"slice_thresholds.{field}: not a field listed in slice_by")
            for value, thresholds in values.items():
                where = f"slice_thresholds.{field}.{value}."
                unknown = [m for m in thresholds if m not in self.metrics]
                if unknown:
                    raise ValueError(f"{where}{unknown[0]}: not a metric listed in metrics")
                if "valid_loss" in thresholds:
                    raise ValueError(
                        f"{where}valid_loss: the validation loss is not measured per slice"
                    )
                _check_thresholds(thresholds, where)
        if "llm_judge" in self.metrics and self.judge is None:
            raise ValueError("metric llm_judge needs a judge")
        if "json_schema" in self.metrics and self.json_schema is None:
            raise ValueError("metric json_schema needs json_schema (a schema file)")
        return self


class AutoscalingSpec(_Model):
    """Target-tracking autoscaling of an endpoint."""

    min_instances: int = Field(default=1, ge=0)
    """Fewest instances; 0 lets the endpoint scale to zero where the provider can."""
    max_instances: int = Field(ge=1)
    """Most instances."""
    target_invocations_per_instance: int | None = Field(default=None, ge=1)
    """Invocations per instance per minute to track; unset takes the provider's default."""

    @model_validator(mode="after")
    def _ordered(self) -> AutoscalingSpec:
        if self.min_instances > self.max_instances:
            raise ValueError("min_instances must be <= max_instances")
        return self


class CanarySpec(_Model):
    """Roll a new model version out to a share of traffic first."""

    traffic_percent: int = Field(ge=1, le=99)
    """Share of traffic the new version gets first."""
    bake_minutes: int = Field(default=10, ge=0, le=1440)
    """How long the canary serves before the rest of the traffic moves (or rolls back)."""
    shadow_examples: int = Field(default=50, ge=0, le=10_000)
    """Golden examples sent to both versions and compared (the first so many of the
    evaluation's golden set); 0 compares nothing and lets only the alarms decide."""
    max_regression: float = Field(default=0.02, ge=0, le=1)
    """Roll back when the new version scores below the old one by more than this share of
    a metric's range (0.02: two points of token_f1, two BLEU points) on any metric."""
    min_win_rate: float = Field(default=0.5, ge=0, le=1)
    """With an llm_judge metric: roll back when the judge prefers the new version less
    often than this (0.5: at least as good as the old one)."""


class EndpointSpec(_Model):
    """How the trained model is served once it passes evaluation."""

    name: ResourceName | None = None
    """Endpoint name; defaults to the run name."""
    instance_type: InstanceType | None = None
    """Provider-native machine type for serving; unset takes the provider's default."""
    instance_count: int = Field(default=1, ge=1, le=100)
    """Instances when not autoscaling."""
    autoscaling: AutoscalingSpec | None = None
    """Scale with traffic; needs a provider with autoscaling."""
    canary: CanarySpec | None = None
    """Roll new versions out gradually; needs a provider with traffic split."""


class RunSpec(_Model):
    """A fine-tuning run, described once for any cloud."""

    version: Annotated[Literal[1], BeforeValidator(_not_boolean)] = 1
    """Spec format version."""
    name: ResourceName
    """Run name: lowercase letters, digits and hyphens; it appears in cloud resource names."""
    description: str | None = Field(default=None, max_length=1024)
    """Free text for people; not sent to any provider."""
    base_model: str = Field(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f]+$")
    """Hosted model id (gpt-4o-mini-2024-07-18), hub id (Qwen/Qwen2.5-0.5B) or local directory."""
    dataset: Annotated[DatasetSpec, BeforeValidator(_dataset_shorthand)]
    """Training (and validation) data; a plain path means `{train: path}`."""
    method: Annotated[MethodSpec, BeforeValidator(_method_shorthand)] = MethodSpec()
    """Training method and adapter; a plain word means `{type: word}`."""
    hyperparameters: Hyperparameters = Hyperparameters()
    """Neutral training knobs; unset ones take the provider's default."""
    targets: list[TargetSpec] = Field(min_length=1)
    """Where the run may execute; `tunefleet plan --target NAME` picks one."""
    placement: PlacementPolicy = PlacementPolicy()
    """Compliance requirements every target must honour, or fail at plan."""
    evaluation: EvaluationSpec | None = None
    """How the trained model is evaluated before it is served."""
    endpoint: EndpointSpec | None = None
    """How the trained model is served; omit to train only."""

    _source: str = PrivateAttr(default="<spec>")
    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _positions: Positions = PrivateAttr(default_factory=lambda: Positions({}))

    @model_validator(mode="after")
    def _check_consistency(self) -> RunSpec:
        seen: dict[str, int] = {}
        for index, target in enumerate(self.targets):
            if target.key in seen:
                raise ValueError(
                    f"targets[{index}] and targets[{seen[target.key]}] are both named "
                    f"{target.key!r}; give each target a unique name"
                )
            seen[target.key] = index
        lora = self.hyperparameters.lora
        if lora is not None and self.method.adapter == "full":
            raise ValueError("hyperparameters.lora applies only to adapters 'lora' and 'qlora'")
        return self

    @property
    def source(self) -> str:
        """The file the spec was loaded from (or ``<spec>``)."""
        return self._source

    def target(self, name: str) -> TargetSpec:
        """The target called ``name``; SpecError listing the names if there is none."""
        for target in self.targets:
            if target.key == name:
                return target
        names = ", ".join(t.key for t in self.targets)
        raise SpecError.single(self._source, f"no target named {name!r} (targets: {names})")

    def resolve_location(self, location: str) -> str:
        """A dataset location made absolute: local paths resolve against the spec's folder."""
        if not is_local(location):
            return location
        return str((self._base_dir / location).resolve())

    def issue(self, path: KeyPath, message: str) -> SpecIssue:
        """A SpecIssue at ``path`` with the line it was written on."""
        return SpecIssue(self._source, self._positions.line_for(path), format_path(path), message)

    def written_issue(self, path: KeyPath, message: str) -> SpecIssue:
        """A SpecIssue at the part of ``path`` the file spells out (``dataset`` for the
        shorthand ``dataset: train.jsonl``), as spec validation names it."""
        return self.issue(self._positions.written(path) or path, message)


# --------------------------------------------------------------------------- loading


def load_spec(path: str | Path, *, require_files: bool = False) -> RunSpec:
    """Read and validate a spec file. Raises InputFileError or SpecError (never a traceback).

    Local paths in the spec resolve against the spec's folder; one that names something
    other than a regular file is an error at its line. With ``require_files`` each local
    dataset must also exist and be readable (what `tunefleet plan` and `run` ask).
    """
    file = Path(path)
    source = str(path)
    with open_input(file, what="spec file") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > MAX_SPEC_BYTES:
            raise InputFileError(
                source, f"{size:,} bytes is too large for a spec (limit {MAX_SPEC_BYTES:,})"
            )
        try:
            raw = handle.read(MAX_SPEC_BYTES + 1)
        except OSError as exc:
            raise InputFileError(source, os_problem(exc)) from None
    if len(raw) > MAX_SPEC_BYTES:  # grew since the stat
        raise InputFileError(source, f"is too large for a spec (limit {MAX_SPEC_BYTES:,} bytes)")
    if b"\x00" in raw:
        raise InputFileError(source, "is a binary file, not a YAML spec")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SpecError.single(source, "not valid UTF-8", line=line) from None
    return parse_spec(
        text, source=source, base_dir=file.resolve().parent, require_files=require_files
    )


def parse_spec(
    text: str,
    *,
    source: str = "<spec>",
    base_dir: Path | None = None,
    require_files: bool = False,
) -> RunSpec:
    """Validate spec YAML text. ``base_dir`` anchors relative dataset paths (default: cwd).

    Validation is strict: no value is coerced to a number or a boolean, and non-finite
    numbers are refused. ``require_files``: see :func:`load_spec`.
    """
    data, positions = load_document(text, source)
    if data is None:
        raise SpecError.single(source, "the spec is empty")
    if not isinstance(data, dict):
        raise SpecError.single(source, "the spec must be a mapping of keys to values", line=1)
    found = [*_find_secrets(data, ()), *_find_non_finite(data, ())]
    if found:
        issues = [SpecIssue(source, positions.line_for(p), format_path(p), why) for p, why in found]
        issues.sort(key=lambda i: (i.line or 0, i.path))
        raise SpecError(issues)
    base = base_dir or Path.cwd()
    try:
        spec = RunSpec.model_validate(
            data, strict=True, context={"base_dir": base, "require_files": require_files}
        )
    except ValidationError as exc:
        issues = [_issue(err, data, positions, source) for err in exc.errors()]
        issues.sort(key=lambda i: (i.line or 0, i.path))
        raise SpecError(issues) from None
    spec._source = source
    spec._base_dir = base
    spec._positions = positions
    return spec


# --------------------------------------------------------------------------- errors


def _data_path(loc: tuple[int | str, ...], data: Any) -> KeyPath:
    """Pydantic's error location reduced to keys that exist in the document.

    Pydantic inserts union and validator names (``function-after[...]``) into locations;
    walking the real data keeps only the parts a user wrote.
    """
    path: list[str | int] = []
    node = data
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        if isinstance(node, dict) and isinstance(part, str) and (part in node or last):
            path.append(part)
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path.append(part)
            node = node[part]
    return tuple(path)


def _allowed_keys(model: type[BaseModel], path: KeyPath) -> list[str]:
    """The field names of the model that sits at ``path`` in a RunSpec, if one does."""
    current: type[BaseModel] | None = model
    for part in path:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part) if current is not None else None
        current = _model_in(field.annotation) if field is not None else None
    return list(current.model_fields) if current is not None else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) + getattr(annotation, "__metadata__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    origin = getattr(annotation, "__origin__", None)
    return _model_in(origin) if origin is not None and origin is not annotation else None


_MESSAGES = {
    "missing": "required key is missing",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
}


def _issue(err: ErrorDetails, data: Any, positions: Positions, source: str) -> SpecIssue:
    kind = err["type"]
    ctx = err.get("ctx", {})
    path = _data_path(err["loc"], data)
    line = positions.line_for(path)
    where = format_path(path)
    value = err.get("input")
    if kind in {"int_type", "float_type"} and isinstance(value, bool):
        wanted = "an integer" if kind == "int_type" else "a number"
        return SpecIssue(
            source, line, where, f"must be {wanted}, not the boolean {str(value).lower()}"
        )
    if kind in {"int_type", "float_type"} and isinstance(value, str):
        wanted = "an integer" if kind == "int_type" else "a number"
        return SpecIssue(source, line, where, f"must be {wanted}, not a string")
    if kind == "extra_forbidden":
        key = str(path[-1]) if path else ""
        allowed = _allowed_keys(RunSpec, path[:-1])
        hint = difflib.get_close_matches(key, allowed, n=1)
        message = f"unknown key {key!r}"
        if hint:
            message += f" (did you mean {hint[0]!r}?)"
        elif allowed:
            message += f" (allowed: {', '.join(allowed)})"
        return SpecIssue(source, line, format_path(path[:-1]) or "(top level)", message)
    if kind in _MESSAGES:
        message = _MESSAGES[kind]
    elif kind in {"greater_than_equal", "greater_than", "less_than_equal", "less_than"}:
        op = {
            "greater_than_equal": ">=",
            "greater_than": ">",
            "less_than_equal": "<=",
            "less_than": "<",
        }
        bound = next(iter(ctx.values()))
        message = f"must be {op[kind]} {bound}"
    elif kind == "literal_error":
        message = f"must be one of {ctx.get('expected', '')}"
    elif kind == "string_pattern_mismatch":
        message = f"{_describe(err.get('input'))} does not match the required pattern {ctx.get('pattern')}"
    elif kind in {"too_short", "too_long"}:
        message = err["msg"].replace("List", "list").replace("Value", "value")
    elif kind == "value_error":
        message = str(ctx.get("error", err["msg"]))
    else:
        message = err["msg"][0].lower() + err["msg"][1:]
    return SpecIssue(source, line, where, message)


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --------------------------------------------------------------------------- numbers


def _find_non_finite(node: Any, path: KeyPath) -> Iterator[tuple[KeyPath, str]]:
    """Every .inf, -.inf and .nan in the document: no spec value may be one."""
    if isinstance(node, float) and not math.isfinite(node):
        written = ".nan" if math.isnan(node) else ("-.inf" if node < 0 else ".inf")
        yield path, f"must be a finite number, not {written}"
    elif isinstance(node, Mapping):
        for key, value in node.items():
            yield from _find_non_finite(value, (*path, key))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _find_non_finite(item, (*path, index))


def published_schema() -> dict[str, Any]:
    """The JSON Schema of a run spec as tunefleet publishes it (``tunefleet schema``, the
    starter project, docs/spec-reference.md): each field described by its docstring."""
    from tunefleet._schema import json_schema

    return json_schema(RunSpec)


# --------------------------------------------------------------------------- secrets

_SECRET_KEY = re.compile(
    r"(?:^|_)(?:password|passwd|secret|token|api_?key|access_?key|private_?key|credentials?|"
    r"connection_?string|sas|client_secret)$",
    re.IGNORECASE,
)
_SECRET_VALUE = re.compile(
    r"(?:\bsk-[A-Za-z0-9_-]{20,}|\bAKIA[0-9A-Z]{16}\b|AccountKey=|SharedAccessSignature=|"
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----|\bghp_[A-Za-z0-9]{30,}|\bxox[bap]-[A-Za-z0-9-]{10,})"
)
_REFUSAL = (
    "looks like a secret; a spec holds none (credentials come from each cloud's standard chain)"
)


def _find_secrets(node: Any, path: KeyPath) -> Iterator[tuple[KeyPath, str]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            sub = (*path, key)
            if isinstance(key, str) and _SECRET_KEY.search(key) and value not in (None, ""):
                yield sub, _REFUSAL
            else:
                yield from _find_secrets(value, sub)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _find_secrets(item, (*path, index))
    elif isinstance(node, str) and _SECRET_VALUE.search(node):
        yield path, _REFUSAL
