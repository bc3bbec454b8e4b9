"""Commands that serve a run's model: deploy, invoke, undeploy."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from tunefleet.cli.run_commands import JsonOpt, RunArg, TargetOpt, _journal


def deploy(
    ctx: typer.Context,
    run_ref: Annotated[
        str,
        typer.Argument(
            metavar="RUN|MODEL",
            help="A run (id, unique prefix or name), or a registered model NAME:VERSION.",
        ),
    ],
    target: TargetOpt = None,
    name: Annotated[
        str | None,
        typer.Option(help="Endpoint name (default: the spec's endpoint.name, else the run name)."),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(help="Deploy a model that missed its evaluation thresholds (needs --reason)."),
    ] = False,
    reason: Annotated[
        str | None, typer.Option(help="Why it is forced; recorded in the audit log with you.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Serve a trained model behind an endpoint (OpenAI-compatible for local). A model that
    missed a threshold of its evaluation is refused (exit 1, each metric named). With
    endpoint.canary, a new version of a served endpoint rolls out as a canary, compared
    with the old one on the golden set, and rolls back by itself (exit 1) on a regression
    or an alarm; deploying again finishes a rollout that was interrupted."""
    from tunefleet.cli.render import err
    from tunefleet.plugins import default_registry
    from tunefleet.registry import model_ref, resolve
    from tunefleet.run import EngineSettings, serving

    with _journal(ctx) as journal:
        version = None
        if ":" in run_ref:
            version = resolve(journal, run_ref)
            run = journal.run(version.run_id)
        else:
            run = journal.run(run_ref)
        endpoint = serving.deploy(
            journal,
            default_registry(),
            run,
            target=target,
            name=name,
            version=version,
            force=force,
            reason=reason,
            poll=EngineSettings.from_env().poll_interval,
            notice=lambda message: err.print(message, markup=False, highlight=False),
        )
    if as_json:
        print(endpoint.model_dump_json(indent=2))
    else:
        what = f"model {model_ref(version)} of run {run.id}" if version else f"run {run.id}"
        print(f"endpoint {endpoint.name} serves {what} at {endpoint.url}")


def invoke(
    ctx: typer.Context,
    run_ref: RunArg,
    message: Annotated[str, typer.Argument(help="What the user asks.")],
    system: Annotated[str | None, typer.Option(help="A system message to send first.")] = None,
    max_tokens: Annotated[int, typer.Option(min=1, max=65536)] = 256,
    temperature: Annotated[float, typer.Option(min=0.0, max=2.0, help="0 answers greedily.")] = 0.0,
    target: TargetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ask the model serving a run; prints its answer."""
    from tunefleet.plugins import default_registry
    from tunefleet.provider import ChatRequest
    from tunefleet.run import serving

    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": message})
    request = ChatRequest(messages=messages, max_tokens=max_tokens, temperature=temperature)
    with _journal(ctx) as journal:
        run = journal.run(run_ref)
        reply = serving.invoke(journal, default_registry(), run, request, target=target)
    if as_json:
        print(json.dumps(reply.model_dump(mode="json"), indent=2))
    else:
        print(reply.text)


def undeploy(ctx: typer.Context, run_ref: RunArg, target: TargetOpt = None) -> None:
    """Delete the endpoint serving a run."""
    from tunefleet.plugins import default_registry
    from tunefleet.run import serving

    with _journal(ctx) as journal:
        run = journal.run(run_ref)
        endpoint = serving.undeploy(journal, default_registry(), run, target=target)
    print(f"endpoint {endpoint.name} deleted")


def register(app: typer.Typer) -> None:
    """Add these commands to the CLI."""
    app.command()(deploy)
    app.command()(invoke)
    app.command()(undeploy)
