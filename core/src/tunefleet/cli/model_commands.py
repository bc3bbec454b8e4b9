"""Commands about trained models: eval, and the registry's models, show, card, promote.

Exit status: `eval` exits 0 when the evaluation passed, 1 when a threshold was missed
(each printed with its value and threshold), as `deploy` does when the gate refuses.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tunefleet.cli.run_commands import JsonOpt, RunArg, TargetOpt, _journal

if TYPE_CHECKING:
    from tunefleet.state.journal import Journal
    from tunefleet.state.models import Evaluation, ModelVersion

ModelArg = Annotated[
    str, typer.Argument(metavar="MODEL", help="NAME:VERSION, or NAME for its newest version.")
]

models_app = typer.Typer(
    help="The model registry: every trained model with its data, settings and evaluation.",
    invoke_without_command=True,
)


def _evaluation_json(evaluation: Evaluation) -> dict[str, Any]:
    return {
        "id": evaluation.id,
        "passed": evaluation.passed,
        "trigger": evaluation.trigger,
        "golden_sha256": evaluation.golden_sha256,
        "golden_location": evaluation.golden_location,
        "created_at": evaluation.created_at.isoformat(),
        "created_by": evaluation.created_by,
        "settings": evaluation.settings,
        "result": evaluation.result,
    }


def _show_evaluation(evaluation: Evaluation) -> None:
    from rich.table import Table

    from tunefleet.cli.render import out

    result = evaluation.result
    table = Table(title=f"evaluation {evaluation.id} on {result.get('examples', 0)} examples")
    for column in ("metric", "value", "baseline", "threshold", ""):
        table.add_column(column)
    for metric in result.get("metrics", []):
        passed = metric.get("passed")
        mark = "" if passed is None else ("pass" if passed else "FAIL")
        table.add_row(
            metric["metric"],
            _number(metric.get("value")),
            _number(metric.get("baseline")),
            _number(metric.get("threshold")),
            mark,
        )
    out.print(table)
    judge = next((m for m in result.get("metrics", []) if m["metric"] == "llm_judge"), None)
    if judge is not None and judge.get("detail"):
        detail = judge["detail"]
        out.print(
            f"judge: win rate {_number(judge.get('value'))} (95% CI "
            f"{_number(detail.get('ci_low'))}-{_number(detail.get('ci_high'))}), "
            f"{detail.get('wins', 0)} wins, {detail.get('ties', 0)} ties, "
            f"{detail.get('losses', 0)} losses",
            markup=False,
        )
    for slice_ in result.get("slices", []):
        values = ", ".join(
            f"{m['metric']} {_number(m.get('value'))}" for m in slice_.get("metrics", [])
        )
        out.print(
            f"slice {slice_['field']}={slice_['value']} ({slice_['examples']}): {values}",
            markup=False,
        )
    verdict = "passed" if evaluation.passed else "FAILED"
    out.print(f"evaluation {verdict}", markup=False)


def _number(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return "-"
    if isinstance(value, (int, float)):
        return f"{value:.4g}"
    return str(value)


def eval_command(
    ctx: typer.Context,
    run_ref: RunArg,
    golden: Annotated[
        Path | None,
        typer.Option(help="A new golden set (chat JSONL, last turn the expected answer)."),
    ] = None,
    spec: Annotated[
        Path | None,
        typer.Option(
            help="Take the evaluation section (metrics, thresholds, judge) from this spec."
        ),
    ] = None,
    target: TargetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate a run's model again, without retraining: a new golden set, new thresholds
    or a new judge. The newest evaluation decides whether the model may be deployed."""
    from tunefleet.cli.inputs import spec_input
    from tunefleet.cli.render import err
    from tunefleet.errors import StateError, UsageError
    from tunefleet.evaluation.planning import load_json_schema
    from tunefleet.evaluation.runner import Golden, evaluate_target
    from tunefleet.evaluation.scoring import ThresholdMiss
    from tunefleet.names import open_input
    from tunefleet.plugins import default_registry

    evaluation_spec = None
    golden_set = None
    schema = None
    if spec is not None:
        loaded = spec_input(spec)
        if loaded.evaluation is None:
            raise UsageError(f"{spec}: the spec has no evaluation section")
        evaluation_spec = loaded.evaluation
        if loaded.evaluation.json_schema is not None:
            schema = load_json_schema(loaded)
        golden_set = Golden.of(Path(loaded.resolve_location(loaded.evaluation.golden_set)))
    if golden is not None:
        with open_input(golden):  # one clear line for a missing file, a FIFO, a directory
            pass
        golden_set = Golden.of(golden.resolve())
    registry = default_registry()
    with _journal(ctx) as journal:
        run = journal.run(run_ref)
        rows = [row for row in journal.targets(run.id) if row.state == "succeeded"]
        if target is not None:
            rows = [row for row in rows if row.name == target]
        if not rows:
            raise StateError(f"run {run.id} has no succeeded target to evaluate")
        evaluations = []

        def shown(name: str) -> Callable[[str, int, int], None]:
            def progress(task: str, done: int, total: int) -> None:
                if done == total:
                    err.print(f"{name}: {task}: {done} of {total} done", markup=False)

            return progress

        for row in rows:
            evaluation = evaluate_target(
                journal,
                registry,
                run,
                row,
                evaluation=evaluation_spec,
                golden=golden_set,
                json_schema=schema,
                trigger="eval",
                progress=shown(row.name),
            )
            evaluations.append((row.name, evaluation))
    if as_json:
        print(
            json.dumps(
                [{"target": name, **_evaluation_json(e)} for name, e in evaluations], indent=2
            )
        )
    else:
        for name, evaluation in evaluations:
            err.print(f"target {name}:", markup=False)
            _show_evaluation(evaluation)
    failed = [(name, e) for name, e in evaluations if not e.passed]
    for name, evaluation in failed:
        for miss in evaluation.result.get("failures", []):
            err.print(f"{name}: {ThresholdMiss.model_validate(miss).describe()}", markup=False)
    if failed:
        raise typer.Exit(1)


def _version_json(journal: Journal, version: ModelVersion) -> dict[str, Any]:
    from tunefleet.registry import misses, model_ref

    evaluation = journal.evaluation(version.evaluation_id) if version.evaluation_id else None
    return {
        "model": model_ref(version),
        "name": version.name,
        "version": version.version,
        "stage": version.stage,
        "run": version.run_id,
        "target": version.target,
        "provider": version.provider,
        "artifact": version.artifact,
        "base_model": version.base_model,
        "training": version.training,
        "datasets": version.datasets,
        "spec_sha256": version.spec_sha256,
        "evaluation": None
        if evaluation is None
        else {
            "id": evaluation.id,
            "passed": evaluation.passed,
            "failures": misses(journal, version),
            "metrics": {m["metric"]: m.get("value") for m in evaluation.result.get("metrics", [])},
        },
        "created_at": version.created_at.isoformat(),
        "updated_at": version.updated_at.isoformat(),
    }


@models_app.callback()
def models(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Option(help="Only versions of this model.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List registered models, newest first (a subcommand shows one, writes its card, or
    promotes it)."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    from tunefleet.cli.render import out

    with _journal(ctx) as journal:
        rows = [_version_json(journal, v) for v in journal.model_versions(name)]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table()
    for column in ("model", "stage", "run", "target", "base model", "evaluation", "created"):
        table.add_column(column)
    for row in rows:
        evaluation = row["evaluation"]
        verdict = "-" if evaluation is None else ("passed" if evaluation["passed"] else "failed")
        table.add_row(
            row["model"],
            row["stage"],
            row["run"],
            row["target"],
            row["base_model"],
            verdict,
            row["created_at"][:16].replace("T", " "),
        )
    out.print(table)


@models_app.command("show")
def show(ctx: typer.Context, model: ModelArg, as_json: JsonOpt = False) -> None:
    """One registered version: what it was trained from, and its evaluation."""
    from tunefleet.cli.render import out
    from tunefleet.registry import resolve

    with _journal(ctx) as journal:
        version = resolve(journal, model)
        shown = _version_json(journal, version)
        evaluation = journal.evaluation(version.evaluation_id) if version.evaluation_id else None
    if as_json:
        print(json.dumps(shown, indent=2))
        return
    for key in ("model", "stage", "run", "target", "provider", "base_model", "spec_sha256"):
        out.print(f"{key}: {shown[key]}", markup=False)
    out.print(f"artifact: {shown['artifact']['kind']} {shown['artifact']['uri']}", markup=False)
    for role, info in shown["datasets"].items():
        out.print(f"{role}: sha256 {info['sha256']} ({info['examples']} examples)", markup=False)
    if evaluation is not None:
        _show_evaluation(evaluation)
    else:
        out.print("evaluation: none", markup=False)


@models_app.command("card")
def card(
    ctx: typer.Context,
    model: ModelArg,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the card to this file.")
    ] = None,
) -> None:
    """The model card (Markdown): intended use, data, metrics against thresholds, known
    failure cases and training settings."""
    from tunefleet.cli.inputs import write_output
    from tunefleet.registry import resolve
    from tunefleet.run.model_card import model_card

    with _journal(ctx) as journal:
        version = resolve(journal, model)
        text = model_card(journal, version)
    if output is None:
        print(text, end="")
        return
    write_output(output, text)
    print(f"wrote {output}")


@models_app.command("promote")
def promote(
    ctx: typer.Context,
    model: ModelArg,
    stage: Annotated[
        str, typer.Option(help="candidate, staging, production or archived.")
    ] = "staging",
    reason: Annotated[str | None, typer.Option(help="Why; recorded in the audit log.")] = None,
    force: Annotated[
        bool, typer.Option(help="Promote to production a model that failed its evaluation.")
    ] = False,
) -> None:
    """Move a version to another stage (audited); promoting one to production archives the
    production version before it, and passes the evaluation gate first."""
    from tunefleet.registry import check_deployable, model_ref, resolve

    with _journal(ctx) as journal:
        version = resolve(journal, model)
        if stage == "production":
            check_deployable(
                journal,
                journal.run(version.run_id),
                version,
                force=force,
                reason=reason,
                action="promote.forced",
            )
        changed = journal.set_model_stage(version.id, stage, reason=reason)
    for row in changed:
        print(f"{model_ref(row)}: {row.stage}")
    if not changed:
        print(f"{model_ref(version)} is {stage} already")


def register(app: typer.Typer) -> None:
    """Add these commands to the CLI."""
    app.command("eval")(eval_command)
    app.add_typer(models_app, name="models")
