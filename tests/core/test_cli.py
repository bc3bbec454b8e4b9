"""The CLI as users run it: real subprocesses, exit codes, one-line errors, no SDK imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tunefleet.plugins import install_hint
from tunefleet.testing import write_entry_point

CLOUD_SDKS = (
    "boto3",
    "botocore",
    "sagemaker",
    "openai",
    "azure",
    "google",
    "vertexai",
    "torch",
    "transformers",
)
NAMESPACES = ("google", "google.cloud")
"""Namespace packages google-cloud-aiplatform's ``*-nspkg.pth`` creates when the interpreter
starts: empty modules, present before tunefleet runs; only what is under them is an SDK."""


def tunefleet(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tunefleet", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


def test_help_imports_no_cloud_sdk() -> None:
    code = (
        "import sys; from tunefleet.cli import main; status = main(['--help']);"
        "from tunefleet.plugins import default_registry; default_registry().providers;"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {CLOUD_SDKS!r}"
        f" and m not in {NAMESPACES!r});"
        "print(status, loaded)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "0 []"
    assert "data" in result.stdout and "plan" in result.stdout


PROVIDER_PACKAGES = (
    "tunefleet_local",
    "tunefleet_openai",
    "tunefleet_sagemaker",
    "tunefleet_azureml",
    "tunefleet_vertex",
)
JOURNAL_MODULES = ("sqlalchemy", "alembic", "tunefleet.state", "tunefleet.run.engine")


def _modules_after_plan(spec: Path) -> tuple[int, set[str]]:
    """Plan ``spec`` as `tunefleet plan --json` does, in a fresh interpreter; its exit
    status and every module it imported (with each one's top-level package)."""
    code = (
        "import sys; from tunefleet.cli import main; status = main(['plan', "
        f"{str(spec)!r}, '--json']);"
        "print(status, sorted({m.split('.')[0] for m in sys.modules} | set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    status, loaded = result.stdout.strip().splitlines()[-1].split(" ", 1)
    return int(status), set(json.loads(loaded.replace("'", '"')))


PLANNED_TARGETS = {
    "openai": ("gpt-4o-mini-2024-07-18", ""),
    "local": ("HuggingFaceTB/SmolLM2-135M", ""),
    "sagemaker": (
        "Qwen/Qwen2.5-0.5B-Instruct",
        "    region: us-east-1\n    options:\n"
        "      role_arn: arn:aws:iam::123456789012:role/tunefleet\n"
        "      bucket: tunefleet-imports\n"
        "      training_image: 123456789012.dkr.ecr.us-east-1.amazonaws.com/trainer:1\n",
    ),
}
ONE_TARGET_PLAN_SKIPS = {
    "rich": "--json output draws nothing",
    "botocore.session": "SageMaker's limits read botocore's model without a session",
    "botocore.client": "SageMaker's limits read botocore's model without a session",
}
"""Modules a plan has no use for, and why; each cost 30-90 ms of every plan once."""


@pytest.mark.parametrize("provider", sorted(PLANNED_TARGETS))
def test_a_one_target_plan_loads_only_that_provider_and_no_journal(
    tmp_path: Path, provider: str
) -> None:
    """`plan` pays for the cloud it plans: not for the journal's database layer, not for
    any other installed provider's modules or SDK, and not for modules it has no use for
    (:data:`ONE_TARGET_PLAN_SKIPS`)."""
    dataset = tmp_path / "train.jsonl"
    example = {
        "messages": [
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "Paris."},
        ]
    }
    dataset.write_text("\n".join(json.dumps(example) for _ in range(12)) + "\n")
    spec = tmp_path / "spec.yaml"
    model, options = PLANNED_TARGETS[provider]
    spec.write_text(
        f"name: imports\nbase_model: {model}\ndataset:\n  train: train.jsonl\n"
        f"targets:\n  - name: only\n    provider: {provider}\n{options}"
    )
    status, loaded = _modules_after_plan(spec)
    assert status == 0
    assert f"tunefleet_{provider}" in loaded
    # Other providers' plugin modules are loaded (that is how providers are found, and
    # they import nothing); nothing beyond them is.
    others = [p for p in PROVIDER_PACKAGES if p != f"tunefleet_{provider}"]
    beyond = {
        m
        for m in loaded
        if m.split(".")[0] in others and m.split(".")[-1] not in ("plugin", "hyperpod") and "." in m
    }
    assert not beyond, beyond
    assert not loaded & set(JOURNAL_MODULES), loaded & set(JOURNAL_MODULES)
    own_sdk = {"sagemaker": {"botocore", "boto3"}}.get(provider, {provider})
    sdks = {m for m in loaded & set(CLOUD_SDKS) if m not in own_sdk} - set(NAMESPACES)
    assert not sdks, sdks
    assert not loaded & set(ONE_TARGET_PLAN_SKIPS), loaded & set(ONE_TARGET_PLAN_SKIPS)
    if provider == "local":  # the plan with no SDK to hide behind: not even the event models
        assert "tunefleet.events" not in loaded


def test_validating_without_a_provider_loads_no_spec_or_provider_models(
    toy_dataset: Path,
) -> None:
    """`data validate` starts its workers once its setup is done: the spec and provider
    contract models (about a sixth of a small file's validation) are not part of it, yet
    naming a provider still gives the training estimate."""
    code = (
        "import sys; from tunefleet.cli import main;"
        f"status = main(['data', 'validate', {str(toy_dataset)!r}, '--json', *sys.argv[1:]]);"
        "print(status, [m for m in ('tunefleet.spec', 'tunefleet.provider',"
        " 'tunefleet_trainer.config') if m in sys.modules])"
    )
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert plain.stdout.strip().splitlines()[-1] == "0 []"
    assert json.loads(plain.stdout.rsplit("\n", 2)[0])["training"] is None
    priced = subprocess.run(
        [sys.executable, "-c", code, "--provider", "openai", "--model", "gpt-4o-mini-2024-07-18"],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(priced.stdout.rsplit("\n", 2)[0])
    assert report["training"]["provider"] == "openai" and report["training"]["amount"] > 0


def test_init_validate_and_plan_the_starter(tmp_path: Path) -> None:
    assert tunefleet("init", str(tmp_path / "proj")).returncode == 0
    schema = json.loads((tmp_path / "proj" / "tunefleet.schema.json").read_text())
    assert schema["title"] == "RunSpec"
    modeline = (tmp_path / "proj" / "tunefleet.yaml").read_text().splitlines()[0]
    assert modeline == "# yaml-language-server: $schema=tunefleet.schema.json"
    again = tunefleet("init", str(tmp_path / "proj"))
    assert again.returncode == 2 and "exists already; use --force" in again.stderr
    valid = tunefleet("data", "validate", str(tmp_path / "proj" / "data" / "train.jsonl"), "--json")
    assert valid.returncode == 0, valid.stderr
    report = json.loads(valid.stdout)
    assert report["examples"] == 12 and report["errors"] == 0
    planned = tunefleet("plan", str(tmp_path / "proj" / "tunefleet.yaml"), "--json")
    assert planned.returncode == 0, planned.stderr
    plans = json.loads(planned.stdout)["plans"]
    assert plans[0]["provider"] == "local" and plans[0]["requests"][-1]["operation"] == "RunTrainer"


def test_validate_exit_codes_and_finding_lines(tmp_path: Path, toy_dataset: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": []}\nnot json\n')
    result = tunefleet("data", "validate", str(bad))
    assert result.returncode == 1
    assert f"{bad}:1: E011 missing_messages_list" in result.stdout
    assert f"{bad}:2: E002 invalid_json" in result.stdout
    ok = tunefleet("data", "validate", str(toy_dataset), "--model", "gpt-4", "--max-tokens", "4096")
    assert ok.returncode == 0
    assert "billable tokens: 4,306" in ok.stdout
    usage = tunefleet("data", "validate", str(toy_dataset), "--format", "xml")
    assert (
        usage.returncode == 2
        and usage.stderr.strip() == "error: --format must be chat or preference, not 'xml'"
    )
    assert tunefleet("data", "validate").returncode == 2


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "error: {path}: no such file"),
        (b"\x7fELF\x00\x00binary", "error: {path}: is a binary file, not a YAML spec"),
        (b"name: [oops\n", "error: {path}:2: invalid YAML"),
        (b"name: demo\ntargets: 3\n", "error: {path}:1 base_model: required key is missing"),
        (b"name: demo\ntargets: 3\n", "error: {path}:2 targets: must be a list"),
    ],
)
def test_bad_specs_get_one_clear_line_and_no_traceback(
    tmp_path: Path, content: bytes | None, expected: str
) -> None:
    path = tmp_path / "spec.yaml"
    if content is not None:
        path.write_bytes(content)
    result = tunefleet("plan", str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert all(line.startswith("error: ") for line in lines), lines
    assert any(line.startswith(expected.format(path=path)) for line in lines), lines


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = tunefleet("--debug", "plan", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2 and "Traceback" in result.stderr


def test_plan_names_the_install_command_for_a_missing_provider(tmp_path: Path) -> None:
    (tmp_path / "train.jsonl").write_text(
        '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n'
    )
    (tmp_path / "spec.yaml").write_text(
        "name: demo\nbase_model: gpt-4o-mini\ndataset: train.jsonl\ntargets:\n  - provider: nebius\n"
    )
    result = tunefleet("plan", str(tmp_path / "spec.yaml"))
    assert result.returncode == 2
    assert "provider 'nebius' is not installed" in result.stderr
    assert "install the distribution that provides it" in result.stderr
    # Every first-party provider is installed here; the hint for one names its extra, and
    # HyperPod's is the SageMaker distribution's.
    assert install_hint("hyperpod") == "install it with: pip install 'tunefleet[sagemaker]'"
    assert install_hint("vertex") == "install it with: pip install 'tunefleet[vertex]'"


def test_plan_with_unmet_requirements_exits_1_with_reasons(tmp_path: Path) -> None:
    site = tmp_path / "site"
    write_entry_point(site, "tunefleet-fake", {"fake": "tunefleet.testing.fake"})
    (tmp_path / "train.jsonl").write_text(
        '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n'
    )
    (tmp_path / "spec.yaml").write_text(
        "name: demo\nbase_model: gpt-4o-mini\ndataset: train.jsonl\ntargets:\n  - provider: fake_hosted\n"
        "placement:\n  require_private_network: true\n"
    )
    result = tunefleet("plan", str(tmp_path / "spec.yaml"), env={"PYTHONPATH": str(site)})
    assert result.returncode == 1
    assert (
        "error: target 'fake_hosted' cannot honour placement.require_private_network"
        in result.stderr
    )
    providers = tunefleet("providers", "--json", env={"PYTHONPATH": str(site)})
    names = {p["name"]: p for p in json.loads(providers.stdout)}
    assert names["fake_hosted"]["distribution"] == "tunefleet-fake"
    assert names["fake"]["capabilities"]["private_network"] is True


def test_a_command_line_builds_only_the_command_it_names() -> None:
    """Typer converts each command it is given on every call, so a command line gets the
    app narrowed to its command; help, --version and a misspelt name get the whole app."""
    import typer

    from tunefleet.cli.app import app, app_for

    names = [
        info.name or typer.main.get_command_name(info.callback.__name__)
        for info in app.registered_commands
        if info.callback is not None
    ] + [str(info.name) for info in app.registered_groups]
    assert {"plan", "run", "data", "audit", "models"} <= set(names)
    for name in names:
        narrowed = app_for([name, "--json"])
        assert len(narrowed.registered_commands) + len(narrowed.registered_groups) == 1, name
    plan = app_for(["--debug", "--state", "sqlite:////x.db", "plan", "spec.yaml"])
    assert [info.callback.__name__ for info in plan.registered_commands if info.callback] == [
        "plan"
    ]
    for whole in ([], ["--help"], ["--version", "plan"], ["plna"], ["--state", "plan"], ["--"]):
        assert app_for(whole) is app, whole
    assert len(app.registered_commands) == len(names) - len(app.registered_groups)


def _click_validate_values(args: list[str]) -> tuple[str, str, int | None, bool] | None:
    """What typer itself makes of a ``data validate`` line (file, model, jobs, cache), or
    None where it refuses the line."""
    import typer

    from tunefleet.cli.app import app

    root = typer.main.get_command(app)
    assert isinstance(root, typer.core.TyperGroup)
    try:
        # Each group's make_context leaves the command's name in _protected_args and the
        # rest in args (the click vendored in typer 0.29 has no public protected_args).
        with root.make_context("tunefleet", list(args)) as ctx:
            name, data, rest = root.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
            assert isinstance(data, typer.core.TyperGroup)
            with data.make_context(str(name), rest, parent=ctx) as data_ctx:
                tail = [*data_ctx._protected_args, *data_ctx.args]
                name, command, rest = data.resolve_command(data_ctx, tail)
                assert command is not None
                with command.make_context(str(name), rest, parent=data_ctx) as command_ctx:
                    params = command_ctx.params
    except (typer.TyperException, typer.Exit):
        return None
    return (str(params["file"]), params["model"], params["jobs"], not params["no_cache"])


@pytest.mark.parametrize(
    "args",
    [
        ["data", "validate", "d.jsonl"],
        ["data", "validate", "d.jsonl", "--model", "gpt-4", "--jobs", "2", "--no-cache"],
        ["data", "validate", "--model=gpt-4", "--jobs=3", "d.jsonl", "--json"],
        ["--debug", "--state", "sqlite:////x.db", "data", "validate", "d.jsonl"],
        ["--state=sqlite:////x.db", "data", "validate", "--format", "chat", "d.jsonl"],
        ["data", "validate", "--model", "a", "--model", "b", "d.jsonl"],
        ["data", "validate", "--", "-odd name.jsonl"],
        ["data", "validate", "--provider", "openai", "--epochs", "2", "d.jsonl"],
        ["data", "validate", "--max-tokens", "512", "--max-per-code", "0", "d.jsonl"],
        ["data", "validate", "--model", "--json", "d.jsonl"],
    ],
)
def test_a_validate_line_is_read_before_typer_as_typer_reads_it(args: list[str]) -> None:
    """The fork server of a large validation starts before typer loads, from a reading of
    the command line by tunefleet.cli._early; where it reads a line, it reads what typer
    does, so the server gets the model and jobs the validation will use."""
    from tunefleet.cli._early import read_validate_line

    line = read_validate_line(args)
    assert line is not None, args
    assert (line.file, line.model, line.jobs, line.cache) == _click_validate_values(args)


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--help"],
        ["data", "validate", "--help"],
        ["--version", "data", "validate", "d.jsonl"],
        ["plan", "spec.yaml"],
        ["data", "validate"],
        ["data", "validate", "a.jsonl", "b.jsonl"],
        ["data", "validate", "d.jsonl", "--jobs", "0"],
        ["data", "validate", "d.jsonl", "--jobs", "many"],
        ["data", "validate", "d.jsonl", "--jobs"],
        ["data", "validate", "d.jsonl", "--no-cache=1"],
        ["data", "validate", "d.jsonl", "--unknown"],
        ["data", "validate", "d.jsonl", "-j", "2"],
        ["--stat", "x", "data", "validate", "d.jsonl"],
        ["data", "check", "d.jsonl"],
    ],
)
def test_a_line_that_is_not_plainly_a_validation_starts_nothing_early(args: list[str]) -> None:
    from tunefleet.cli._early import read_validate_line

    assert read_validate_line(args) is None


def test_the_early_reading_knows_every_option_of_the_command() -> None:
    """An option added to `data validate` (or the root) and not to the early reading would
    make it give up on every line using it: the two lists stay equal."""
    import typer

    from tunefleet.cli import _early
    from tunefleet.cli.app import app

    root = typer.main.get_command(app)
    assert isinstance(root, typer.core.TyperGroup)
    data = root.commands["data"]
    assert isinstance(data, typer.core.TyperGroup)
    validate = data.commands["validate"]

    def options(
        command: typer.core.TyperCommand | typer.core.TyperGroup, *, flags: bool
    ) -> set[str]:
        return {
            name
            for param in command.params
            if isinstance(param, typer.core.TyperOption)
            and param.is_flag == flags
            and not param.is_eager
            for name in param.opts
        }

    assert options(validate, flags=False) == _early.VALIDATE_OPTIONS_WITH_VALUES
    assert options(validate, flags=True) == _early.VALIDATE_FLAGS
    assert options(root, flags=False) == _early.ROOT_OPTIONS_WITH_VALUES
    assert options(root, flags=True) == _early.ROOT_FLAGS


def test_a_large_validation_starts_its_workers_server_before_typer_loads(tmp_path: Path) -> None:
    """Measured: the server then starts about 0.1 s sooner, and the first block is read
    about 0.15 s sooner (docs/performance.md). A small file starts no server at all."""
    from tunefleet.data._pool import PARALLEL_MIN_BYTES

    large, small = tmp_path / "large.jsonl", tmp_path / "small.jsonl"
    with large.open("wb") as handle:
        handle.truncate(PARALLEL_MIN_BYTES)  # a sparse file: only its size is looked at
    small.write_text("{}\n")
    probe = (
        "import sys; from multiprocessing import forkserver; "
        "from tunefleet.cli._early import start_early; start_early(sys.argv[1:]); "
        "print(forkserver._forkserver._forkserver_pid is not None, 'typer' in sys.modules)"
    )
    env = {**os.environ, "TUNEFLEET_CACHE_DIR": str(tmp_path / "cache")}

    def started(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", probe, *args], capture_output=True, text=True, env=env
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.split()[0] + " " + done.stdout.split()[1]

    assert started("data", "validate", str(large)) == "True False"
    assert started("data", "validate", "--jobs", "1", str(large)) == "False False"
    assert started("data", "validate", str(small)) == "False False"
    assert started("plan", str(large)) == "False False"


def test_a_misspelt_command_is_still_suggested() -> None:
    result = tunefleet("plna", "spec.yaml")
    assert result.returncode == 2
    assert "Did you mean 'plan'?" in result.stderr


def test_the_python_api_leaves_the_garbage_collector_as_the_caller_set_it() -> None:
    """The executable tunes the collector and freezes it before exiting (tunefleet.cli's
    ``console``); a program calling ``main`` goes on running, so main changes neither."""
    code = (
        "import gc; from tunefleet.cli import main; before = gc.get_threshold();"
        "status = main(['schema']); print(); "
        "print(status, before == gc.get_threshold(), gc.get_freeze_count())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "0 True 0"


def test_the_executable_exits_with_the_command_status_and_all_its_output(
    tmp_path: Path,
) -> None:
    """What the executable writes before it freezes the collector and exits is all there."""
    result = tunefleet("schema")
    assert result.returncode == 0
    assert json.loads(result.stdout)["title"] == "RunSpec"
    missing = tunefleet("plan", str(tmp_path / "absent.yaml"))
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: ") and "absent.yaml" in missing.stderr


def test_schema_is_json_schema(tmp_path: Path) -> None:
    result = tunefleet("schema")
    schema = json.loads(result.stdout)
    assert schema["title"] == "RunSpec" and "targets" in schema["required"]


@pytest.mark.slow
def test_a_2gb_single_line_is_one_finding_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "huge.jsonl"
    chunk = b"{" * (64 << 20)
    with path.open("wb") as handle:
        for _ in range(32):
            handle.write(chunk)
        handle.write(b"\n")
    result = tunefleet("data", "validate", str(path), "--json")
    path.unlink()
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["counts"] == {"E004": 1}
    assert report["findings"][0]["detail"].startswith("line is 2,147,483,649 bytes")


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_a_fifo_dataset_is_refused_not_waited_on(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "train.jsonl")
    (tmp_path / "spec.yaml").write_text(
        "name: demo\nbase_model: gpt-4o-mini\ndataset: train.jsonl\ntargets:\n  - provider: local\n"
    )
    journal = tmp_path / "journal.db"
    env = {"TUNEFLEET_STATE": f"sqlite:///{journal}"}
    validate = tunefleet("data", "validate", str(tmp_path / "train.jsonl"), env=env)
    assert validate.returncode == 2
    assert _one_error_line(validate) == (
        f"error: {tmp_path / 'train.jsonl'}: is a FIFO (named pipe), not a JSONL file"
    )
    for command in ("plan", "run"):
        result = tunefleet(command, str(tmp_path / "spec.yaml"), env=env)
        assert result.returncode == 2
        assert _one_error_line(result) == (
            f"error: {tmp_path / 'spec.yaml'}:3 dataset: train.jsonl: "
            "is a FIFO (named pipe), not a regular file"
        )
    assert not journal.exists()


def test_symlink_loops_and_recursive_aliases_are_input_errors_not_internal_ones(
    tmp_path: Path,
) -> None:
    loop = tmp_path / "loop.yaml"
    loop.symlink_to(loop)
    result = tunefleet("plan", str(loop))
    assert result.returncode == 2
    assert _one_error_line(result) == (
        f"error: {loop}: too many levels of symbolic links (a symlink loop?)"
    )
    alias = tmp_path / "alias.yaml"
    alias.write_text("name: demo\ndescription: &r [*r]\n")
    result = tunefleet("plan", str(alias))
    assert result.returncode == 2
    assert _one_error_line(result) == f"error: {alias}:2: recursive alias *r: it refers to itself"


def test_an_empty_dataset_fails_validation_and_the_plan(tmp_path: Path) -> None:
    (tmp_path / "train.jsonl").write_bytes(b"")
    result = tunefleet("data", "validate", str(tmp_path / "train.jsonl"), "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["counts"] == {"E005": 1}
    (tmp_path / "spec.yaml").write_text(
        "name: demo\nbase_model: gpt-4o-mini\ndataset: train.jsonl\ntargets:\n  - provider: local\n"
    )
    planned = tunefleet("plan", str(tmp_path / "spec.yaml"))
    assert planned.returncode == 1
    assert _one_error_line(planned).startswith(
        f"error: {tmp_path / 'spec.yaml'}:3 dataset: {tmp_path / 'train.jsonl'}: "
        "E005 no_examples: the file is empty"
    )


def test_an_unwritable_schema_output_is_one_line(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    targets = [
        (tmp_path / "no" / "x.json", "cannot write: no such file"),
        (tmp_path, "is a directory, not a regular file"),
        (tmp_path / "pipe", "is a FIFO (named pipe), not a regular file"),
        (Path("/dev/null"), "is a character device, not a regular file"),
    ]
    for target, problem in targets:
        result = tunefleet("schema", "-o", str(target))
        assert result.returncode == 2
        assert _one_error_line(result) == f"error: {target}: {problem}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]  # nothing half-written
    assert tunefleet("schema", "-o", str(tmp_path / "s.json")).returncode == 0
    assert json.loads((tmp_path / "s.json").read_text())["title"] == "RunSpec"


def test_init_never_writes_into_a_fifo_even_with_force(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "tunefleet.yaml")
    result = tunefleet("init", str(tmp_path), "--force")
    assert result.returncode == 2
    assert _one_error_line(result) == (
        f"error: {tmp_path / 'tunefleet.yaml'}: is a FIFO (named pipe), not a regular file"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tunefleet.yaml"]
