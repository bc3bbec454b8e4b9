"""A Gemini tuning job's training metrics, read from where Vertex publishes them.

A supervised tuning job "automatically collects" ``/train_total_loss``,
``/train_fraction_of_correct_next_step_preds`` and ``/train_num_predictions`` at each
training step, and with a validation dataset ``/eval_total_loss``,
``/eval_fraction_of_correct_next_step_preds`` and ``/eval_num_predictions``; "the metrics
visualizations are available after the tuning job starts running" and are "updated in real
time as tuning progresses" ("Tune Gemini models with supervised fine-tuning", section
"Tuning and validation metrics",
https://cloud.google.com/vertex-ai/generative-ai/docs/models/gemini-use-supervised-tuning).

They are the time series of a Vertex AI TensorBoard run, found from the job's output-only
``experiment`` ("The Experiment associated with this TuningJob", a Vertex ML Metadata
context) as Google's own tuning notebook reads them (GoogleCloudPlatform/generative-ai,
``gemini/tuning/sft_gemini_summarization.ipynb``, "Step7 [a]: Tuning and evaluation
metrics"), through the Vertex AI SDK whose source says what each step asks of the API:

1. ``MetadataService.GetContext(experiment)``: the experiment context's metadata names its
   TensorBoard, ``backing_tensorboard_resource``
   (``aiplatform.Experiment.get_backing_tensorboard_resource``; the key is
   ``metadata.constants._BACKING_TENSORBOARD_RESOURCE_KEY``).
2. ``MetadataService.ListContexts`` with ``schema_title="system.ExperimentRun" AND
   parent_contexts:"<experiment>"`` (the notebook's ``metadata_utils._make_filter_string``):
   the experiment's run; the notebook takes the first.
3. The TensorBoard run is ``<tensorboard>/experiments/<experiment ID>/runs/<run>``, where
   ``<run>`` is the run context's ID less the ``<experiment ID>-`` the SDK puts before a run
   name (``_format_experiment_run_resource_id``: ``f"{experiment_name}-{run_name}"``; the
   SDK's ``_assign_backing_tensorboard`` names the TensorBoard experiment after the
   experiment and its run after the run name). Older revisions of Google's tuning notebooks
   used the run context's whole ID there, so that is tried second.
4. ``TensorboardService.ListTensorboardTimeSeries(run)``: the series, by display name
   (``TensorboardRun.read_time_series_data`` keys them so; the notebook reads
   ``metrics["/train_total_loss"]``).
5. ``TensorboardService.ReadTensorboardTimeSeriesData`` of each series tunefleet has a field
   for, with ``max_data_points`` 10,000 (the most it takes, per the discovery document; the
   SDK's ``batchRead`` returns at most 1,000 scalars, a random sample past that, which a
   cursor cannot resume on).

Each step becomes one MetricEvent ``metric-<step>``: its training loss and token accuracy,
and its validation loss and token accuracy where Vertex evaluated at that step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from tunefleet.errors import ProviderNotFoundError
from tunefleet.events import MetricEvent
from tunefleet_vertex._client import Where, client, timeout, translated

__all__ = ["BACKING_TENSORBOARD_KEY", "MAX_DATA_POINTS", "SERIES", "tuning_metrics"]

SERIES: dict[str, str] = {
    "/train_total_loss": "train_loss",
    "/train_fraction_of_correct_next_step_preds": "train_token_accuracy",
    "/eval_total_loss": "valid_loss",
    "/eval_fraction_of_correct_next_step_preds": "valid_token_accuracy",
}
"""The documented tuning and validation metrics tunefleet's MetricEvent has a field for (the
``_num_predictions`` series count tokens, which it has not)."""
BACKING_TENSORBOARD_KEY = "backing_tensorboard_resource"
"""Where an experiment context's metadata names its TensorBoard (the Vertex AI SDK's
``metadata.constants._BACKING_TENSORBOARD_RESOURCE_KEY``)."""
EXPERIMENT_RUN = "system.ExperimentRun"
"""The schema title of an experiment's run contexts (``metadata.constants``)."""
MAX_DATA_POINTS = 10_000
"""``ReadTensorboardTimeSeriesData``'s ``max_data_points`` ceiling ("can't be greater than
10k", the discovery document); fewer points than that are all returned."""
_TERMINAL = frozenset(
    {
        "JOB_STATE_SUCCEEDED",
        "JOB_STATE_FAILED",
        "JOB_STATE_CANCELLED",
        "JOB_STATE_EXPIRED",
        "JOB_STATE_PARTIALLY_SUCCEEDED",
    }
)
_ACCURACIES = frozenset({"train_token_accuracy", "valid_token_accuracy"})


def tuning_metrics(where: Where, job: Mapping[str, Any], after_step: int = -1) -> list[MetricEvent]:
    """The MetricEvents of a tuning job's steps after ``after_step``, oldest first.

    ``job`` holds what was read of the TuningJob: ``experiment`` (its resource name; without
    one, Vertex has published nothing yet and the answer is empty), ``state`` (a
    ``JobState`` name) and, where Vertex reported it, ``stats["tuning_step_count"]`` (each
    event's ``total_steps``). Resume with ``after_step`` the last event's ``step``; ids are
    ``metric-<step>``, the same however often a step is read.

    While the job has not ended, its newest step is held back: Vertex may not have written
    every series at that step yet (its validation loss, say), and a step reported is not
    reported again. Nothing found where the chain leads (no experiment, TensorBoard, run or
    series yet) is no metrics, not an error; Google's errors are raised as tunefleet's.
    """
    experiment = str(job.get("experiment") or "")
    if not experiment:
        return []
    try:
        series = _series(where, experiment)
    except ProviderNotFoundError:
        return []
    values: dict[int, dict[str, float]] = {}
    times: dict[int, datetime] = {}
    service = client(where, "tensorboard")
    for display_name, field in SERIES.items():
        name = series.get(display_name)
        if name is None:
            continue
        try:
            with translated(f"read the tuning metric {display_name} of {experiment}"):
                answer = service.read_tensorboard_time_series_data(
                    request={"tensorboard_time_series": name, "max_data_points": MAX_DATA_POINTS},
                    timeout=timeout(),
                )
        except ProviderNotFoundError:
            continue
        for point in answer.time_series_data.values:
            step = int(point.step)
            value = _value(field, point)
            if step < 0 or value is None:
                continue
            values.setdefault(step, {})[field] = value
            stamp = point.wall_time
            if isinstance(stamp, datetime) and (step not in times or stamp > times[step]):
                times[step] = stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    steps = sorted(values)
    if steps and str(job.get("state") or "") not in _TERMINAL:
        steps.pop()
    total = _total_steps(job)
    now = datetime.now(UTC)
    return [
        MetricEvent(
            id=f"metric-{step}",
            time=times.get(step, now),
            step=step,
            total_steps=total if total is not None and total >= step else None,
            **values[step],
        )
        for step in steps
        if step > after_step
    ]


def _value(field: str, point: Any) -> float | None:
    """A point's scalar for ``field``; an accuracy outside [0, 1] or not a number is
    dropped (a MetricEvent refuses it), a loss is kept even when it diverged (NaN)."""
    if "scalar" not in point:
        return None
    value = float(point.scalar.value)
    if field in _ACCURACIES and not (math.isfinite(value) and 0.0 <= value <= 1.0):
        return None
    return value


def _total_steps(job: Mapping[str, Any]) -> int | None:
    stats = job.get("stats") or {}
    count = int(stats.get("tuning_step_count") or 0) if isinstance(stats, Mapping) else 0
    return count or None


def _series(where: Where, experiment: str) -> dict[str, str]:
    """The TensorBoard time series of the experiment's run, display name -> resource name
    (steps 1 to 4 of the module's chain); {} while there is none."""
    metadata = client(where, "metadata")
    with translated(f"read the experiment {experiment}"):
        context = metadata.get_context(name=experiment, timeout=timeout())
    tensorboard = str((context.metadata or {}).get(BACKING_TENSORBOARD_KEY) or "")
    if not tensorboard:
        return {}
    store, _, experiment_id = experiment.rpartition("/contexts/")
    query = f'schema_title="{EXPERIMENT_RUN}" AND parent_contexts:"{experiment}"'
    with translated(f"list the runs of the experiment {experiment}"):
        runs = metadata.list_contexts(request={"parent": store, "filter": query}, timeout=timeout())
        run = next(iter(runs), None)
    if run is None:
        return {}
    run_id = str(run.name).rsplit("/", 1)[-1]
    candidates = dict.fromkeys((run_id.removeprefix(f"{experiment_id}-"), run_id))
    service = client(where, "tensorboard")
    for candidate in candidates:
        parent = f"{tensorboard}/experiments/{experiment_id}/runs/{candidate}"
        try:
            with translated(f"list the time series of {parent}"):
                return {
                    str(found.display_name): str(found.name)
                    for found in service.list_tensorboard_time_series(
                        parent=parent, timeout=timeout()
                    )
                }
        except ProviderNotFoundError:
            continue
    return {}
