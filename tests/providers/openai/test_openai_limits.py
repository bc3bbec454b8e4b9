"""Every documented limit of a planned request is checked at plan, citing its source; staging
sends exactly what was planned; job statuses are the documented ones; and the fake service
refuses what the service refuses.

Plans with files far larger than a test can write (9 GB) are made by calling the provider's
``plan`` with the facts validation would have found; staging a file the plan did not know
the size of uses a sparse file, which is never read.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import openai
import pytest
from tests.openapi_contract import OPENAI_SPEC, as_json_schema, load_contract
from tests.providers.openai import azure_openai_contract
from tests.providers.openai.conftest import BASE_MODEL, DATA, azure_spec, openai_spec
from tests.providers.openai.fake_azure import FakeAzureManagement
from tests.providers.openai.fake_openai import API_KEY, FakeOpenAI

from tunefleet.errors import ProviderError
from tunefleet.events import JobState
from tunefleet.planning import plan_run
from tunefleet.plugins import discover
from tunefleet.provider import DatasetFacts, Plan, PlanRequest
from tunefleet.spec import parse_spec
from tunefleet_openai import _limits
from tunefleet_openai._events import STATES, state_of
from tunefleet_openai.options import OpenAIOptions
from tunefleet_openai.provider import OpenAIProvider

MiB = 1 << 20
GiB = 1 << 30


def facts(
    size: int | None, *, role: str = "train", examples: int = 200, tokens: int = 100_000
) -> DatasetFacts:
    return DatasetFacts(
        role=role,  # type: ignore[arg-type]
        location=f"{role}.jsonl",
        examples=examples,
        tokens=tokens,
        billable_tokens=tokens,
        sha256=hashlib.sha256(role.encode()).hexdigest(),
        size_bytes=size,
    )


def plan_of(spec_text: str, datasets: dict[str, DatasetFacts]) -> Plan:
    """The provider's plan for the spec's target with the dataset ``datasets`` facts."""
    spec = parse_spec(spec_text)
    target = spec.targets[0]
    options = OpenAIOptions.model_validate(target.options)
    return OpenAIProvider().plan(
        PlanRequest(spec=spec, target=target, options=options, datasets=datasets)
    )


def unmet(plan: Plan) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for item in plan.unmet:
        found.setdefault(item.requirement, []).append(item.reason)
    return found


@pytest.fixture
def azure_text(fake_openai: FakeOpenAI, fake_azure: FakeAzureManagement) -> Any:
    def make(**kwargs: Any) -> str:
        kwargs.setdefault("validation", False)
        return azure_spec(fake_openai, fake_azure, **kwargs)

    return make


# ---------------------------------------------------------------------- uploads


@pytest.mark.parametrize(
    ("size", "limits"),
    [
        (600 * MiB, []),  # over the Files API's 512 MB: through the Uploads API, allowed
        (2 * GiB, ["the maximum file upload size is 1 GB"]),
        (9 * GiB, ["an Upload can accept at most 8 GB", "the maximum file upload size is 1 GB"]),
    ],
)
def test_openai_upload_sizes_are_checked_at_plan(
    fake_openai: FakeOpenAI, size: int, limits: list[str]
) -> None:
    plan = plan_of(openai_spec(fake_openai, validation=False), {"train": facts(size)})
    stage = plan.requests_for("stage")
    parts = -(-size // (64 * MiB))
    assert [r.operation for r in stage] == (
        ["createUpload"] + ["addUploadPart"] * parts + ["completeUpload"]
    )
    assert stage[0].body == {
        "bytes": size,
        "filename": f"tunefleet-{facts(size).sha256}.jsonl",
        "mime_type": "text/jsonl",
        "purpose": "fine-tune",
    }
    assert all(r.body["data"]["bytes"] <= 64 * MiB for r in stage[1:-1])
    reasons = unmet(plan).get("dataset.train", [])
    assert len(reasons) == len(limits)
    for reason, limit in zip(reasons, limits, strict=True):
        assert reason.startswith(f"createUpload: bytes is {size:,}, more than")
        assert limit in reason, "the reason cites where the limit is documented"


@pytest.mark.parametrize(
    ("size", "limits"),
    [
        (500 * MiB, []),
        (600 * MiB, ["max file size for fine-tuning: 512 MB"]),
        (10 * GiB, ["an Upload size can be a maximum of 9 GB", "max file size for fine-tuning"]),
    ],
)
def test_azure_upload_sizes_are_checked_at_plan(
    azure_text: Any, size: int, limits: list[str]
) -> None:
    plan = plan_of(azure_text(), {"train": facts(size)})
    reasons = unmet(plan).get("dataset.train", [])
    assert len(reasons) == len(limits)
    for reason, limit in zip(reasons, limits, strict=True):
        assert limit in reason


def test_azure_limits_on_a_resources_files_and_job_size_are_checked_at_plan(
    azure_text: Any,
) -> None:
    # Azure's quotas page: 1 GB of fine-tuning files per resource, and a job of at most
    # 2 billion tokens (tokens in the training file x epochs).
    plan = plan_of(
        azure_text(hyperparameters={"epochs": 3}, validation=True),
        {
            "train": facts(500 * MiB, tokens=700_000_000),
            "validation": facts(600 * MiB, role="validation"),
        },
    )
    reasons = unmet(plan)
    assert [r for r in reasons["dataset"] if "at most 1,073,741,824 bytes" in r]
    (tokens,) = [r for r in reasons["dataset.train"] if "2,000,000,000" in r]
    assert "700,000,000 tokens x 3 epoch(s) is 2,100,000,000 tokens" in tokens


def test_too_few_examples_fail_the_plan_not_the_job(fake_openai: FakeOpenAI) -> None:
    plan = plan_of(openai_spec(fake_openai, validation=False), {"train": facts(4096, examples=4)})
    (reason,) = unmet(plan)["dataset.train"]
    assert "has 4 example(s); a fine-tuning job needs at least 10" in reason
    assert "example-count-recommendations" in reason


def test_the_planned_uploads_are_the_requests_sent(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    """What a plan shows of an upload (operation, form fields, sizes) is what stage sends,
    for one createFile and for the Uploads API's parts."""
    result = plan_run(parse_spec(openai_spec(fake_openai)), registry=discover())
    (plan,) = result.plans
    provider = OpenAIProvider()
    for role in ("train", "validation"):
        path = DATA / f"{role}.jsonl"
        provider.stage(plan, role, path, hashlib.sha256(path.read_bytes()).hexdigest())
    sent = [(op, body) for op, body in fake_openai.requests if op == "createFile"]
    planned = [(r.operation, r.body) for r in plan.requests_for("stage")]
    assert sent == planned

    fake_openai.requests.clear()
    (parts_plan,) = plan_run(
        parse_spec(
            openai_spec(
                fake_openai,
                validation=False,
                options={"multipart_threshold_bytes": 4096, "upload_part_bytes": 4096},
            )
        ),
        registry=discover(),
    ).plans
    fake_openai.files.clear()  # so the file goes up again
    path = DATA / "train.jsonl"
    provider.stage(parts_plan, "train", path, hashlib.sha256(path.read_bytes()).hexdigest())
    sent = [
        (op, body)
        for op, body in fake_openai.requests
        if op in {"createUpload", "addUploadPart", "completeUpload"}
    ]
    planned = [(r.operation, r.body) for r in parts_plan.requests_for("stage")]
    assert [op for op, _ in sent] == [op for op, _ in planned]
    assert sent[:-1] == planned[:-1], "createUpload and every part as planned"
    assert len(sent[-1][1]["part_ids"]) == len(planned[-1][1]["part_ids"])
    assert set(sent[-1][1]) == set(planned[-1][1]) == {"part_ids", "md5"}


def test_staging_refuses_a_file_over_the_limits_before_sending_anything(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    # A plan made without the file's size cannot check it; staging does, before any upload.
    plan = plan_of(openai_spec(fake_openai, validation=False), {})
    assert plan.requests_for("stage")[0].body["file"] == {
        "filename": "tunefleet-<sha256 of train>.jsonl",
        "content_type": "text/jsonl",
    }
    huge = tmp_path / "huge.jsonl"
    with huge.open("wb") as sparse:
        sparse.truncate(9 * GiB)
    with pytest.raises(ProviderError) as caught:
        OpenAIProvider().stage(plan, "train", huge, "0" * 64)
    assert caught.value.code == "over_limit"
    assert "an Upload can accept at most 8 GB" in str(caught.value)
    assert "nothing was uploaded" in str(caught.value)
    assert not fake_openai.requests, "not even a listing was sent"


# ---------------------------------------------------------------------- the job request


def test_hyperparameters_out_of_the_apis_bounds_fail_the_plan(fake_openai: FakeOpenAI) -> None:
    result = plan_run(
        parse_spec(openai_spec(fake_openai, hyperparameters={"epochs": 60, "batch_size": 300})),
        registry=discover(),
    )
    reasons = unmet(result.plans[0])
    (epochs,) = reasons["hyperparameters.epochs"]
    assert "method.supervised.hyperparameters.n_epochs is 60, more than 50" in epochs
    assert "FineTuneSupervisedHyperparameters/properties/n_epochs" in epochs
    (batch,) = reasons["hyperparameters.batch_size"]
    assert "is 300, more than 256" in batch


def test_metadata_that_does_not_fit_fails_the_plan(fake_openai: FakeOpenAI) -> None:
    tags = {f"tag{i}": "x" for i in range(14)}  # with tunefleet's three labels: 17 keys
    result = plan_run(
        parse_spec(openai_spec(fake_openai, placement={"tags": tags})), registry=discover()
    )
    (reason,) = unmet(result.plans[0])["placement.tags"]
    assert "metadata has 17 entries, more than 16" in reason
    assert "components/schemas/Metadata" in reason and "tunefleet's labels take 3" in reason


@pytest.mark.parametrize(
    ("body", "path", "message"),
    [
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata", "has 17 entries"),
        ({"metadata": {"k" * 65: "v"}}, "metadata." + "k" * 65, "has 65 characters, more than 64"),
        ({"metadata": {"k": "v" * 513}}, "metadata.k", "has 513 characters, more than 512"),
        ({"suffix": "s" * 65}, "suffix", "has 65 characters, more than 64"),
        ({"suffix": ""}, "suffix", "has 0 characters, fewer than 1"),
        ({"seed": 2**31}, "seed", "is 2,147,483,648, more than 2,147,483,647"),
        ({"seed": -1}, "seed", "is -1, less than 0"),
        (
            {"method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0}}}},
            "method.dpo.hyperparameters.beta",
            "is 0, not more than 0",
        ),
        (
            {"method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 0}}}},
            "method.supervised.hyperparameters.n_epochs",
            "is 0, less than 1",
        ),
        ({"method": {"type": "distillation"}}, "method.type", "is 'distillation', not one of"),
    ],
)
def test_each_openai_job_limit_is_checked_with_its_source(
    body: dict[str, Any], path: str, message: str
) -> None:
    request = {"model": BASE_MODEL, "training_file": "file-1", **body}
    (violation,) = _limits.violations(_limits.OPENAI_CREATE_JOB, request)
    assert (violation.path, message in violation.message) == (path, True)
    assert violation.source.startswith("openai-openapi.json#/")


@pytest.mark.parametrize(
    ("body", "path", "message"),
    [
        ({"suffix": "s" * 41}, "suffix", "has 41 characters, more than 40"),
        ({"suffix": "v1.2"}, "suffix", "has characters outside"),
        ({"metadata": {"k": "v"}}, "metadata", "is not a field the service defines"),
        ({"method": {"type": "supervised", "supervised": {}}}, "method.supervised", "not a field"),
        ({"seed": 2**31}, "seed", "more than 2,147,483,647"),
    ],
)
def test_each_azure_job_limit_is_checked_with_its_source(
    body: dict[str, Any], path: str, message: str
) -> None:
    request = {"model": BASE_MODEL, "training_file": "file-1", **body}
    (violation,) = _limits.violations(_limits.AZURE_CREATE_JOB, request)
    assert (violation.path, message in violation.message) == (path, True)
    assert "2025-04-01-preview/azureopenai.json#/definitions/" in violation.source


def test_an_azure_suffix_leaves_room_for_the_run_key(azure_text: Any) -> None:
    fits = plan_of(azure_text(options={"suffix": "s" * 23}), {})
    assert fits.ok and fits.request("createFineTuningJob").body["suffix"] == (
        "s" * 23 + "-${run_key_tag}"
    )
    (reason,) = unmet(plan_of(azure_text(options={"suffix": "s" * 24}), {}))["options.suffix"]
    assert "suffix has 41 characters, more than 40" in reason
    assert "leaving 23 for options.suffix" in reason
    # The default, the run's name (up to 40 characters), is cut to fit.
    long_name = plan_of(azure_text(name="a" * 22 + "-" + "b" * 17), {})
    assert long_name.ok
    assert long_name.request("createFineTuningJob").body["suffix"] == "a" * 22 + "-${run_key_tag}"


def test_the_azure_deployment_limits_are_checked_at_plan(azure_text: Any) -> None:
    # Resource Manager's tag names may not hold '/', which tunefleet's tag keys may.
    plan = plan_of(azure_text(placement={"tags": {"team/app": "support"}}), {})
    (reason,) = unmet(plan)["placement.tags"]
    assert reason.startswith("Deployments_CreateOrUpdate: tags team/app (the key)")
    assert "tag-resources#limitations" in reason
    # A GlobalStandard deployment may keep the weights outside the allowed regions.
    plan = plan_of(
        azure_text(
            options={"deployment_sku": "GlobalStandard"},
            placement={"allowed_regions": ["sweden*"]},
        ),
        {},
    )
    (reason,) = unmet(plan)["placement.allowed_regions"]
    assert "outside the resource's geography" in reason


def test_the_copied_limits_match_openais_description() -> None:
    """Each limit _limits copied from OpenAI's description, by the JSON pointer it cites,
    is the description's own (the provider holds copies: no spec file at run time)."""
    if not OPENAI_SPEC.is_file():
        pytest.skip(f"OpenAI's API description is not at {OPENAI_SPEC} (set TUNEFLEET_SPECS)")
    contract = load_contract(OPENAI_SPEC)
    assert contract is not None
    document = as_json_schema(contract.document)
    keywords = {"minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum", "enum"}
    checked = 0

    def walk(node: Any) -> None:
        nonlocal checked
        if isinstance(node, dict):
            source = node.get("x-source", "")
            if source.startswith("openai-openapi.json#/") and " " not in source:
                target: Any = document
                for step in source.split("#", 1)[1].strip("/").split("/"):
                    step = step.replace("~1", "/").replace("~0", "~")
                    target = target[int(step)] if isinstance(target, list) else target[step]
                ours = {k: v for k, v in node.items() if k in keywords}
                theirs = {k: v for k, v in target.items() if k in keywords}
                assert ours == theirs, source
                if "required" in node:
                    assert set(node["required"]) == set(target.get("required", [])), source
                checked += 1
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(_limits.SCHEMAS["openai"])
    assert checked >= 10


# ---------------------------------------------------------------------- statuses


def test_every_documented_status_is_mapped_and_no_other() -> None:
    documented = set(azure_openai_contract.STATES) | {"paused"}
    if OPENAI_SPEC.is_file():
        contract = load_contract(OPENAI_SPEC)
        assert contract is not None
        schemas = contract.document["components"]["schemas"]
        documented |= set(schemas["FineTuningJob"]["properties"]["status"]["enum"])
    else:
        documented |= {"validating_files", "queued", "running", "succeeded", "failed"}
    assert set(STATES) == documented | {"cancelled"}
    assert state_of("pending") == JobState.QUEUED
    assert state_of("created") == JobState.QUEUED
    assert state_of("pausing") == state_of("resuming") == JobState.RUNNING
    with pytest.raises(ProviderError) as caught:
        state_of("archived")
    assert caught.value.code == "unknown_job_status" and "'archived'" in str(caught.value)


def test_an_unknown_status_is_reported_not_taken_for_running(fake_openai: FakeOpenAI) -> None:
    (plan,) = plan_run(
        parse_spec(openai_spec(fake_openai, validation=False)), registry=discover()
    ).plans
    provider = OpenAIProvider()
    path = DATA / "train.jsonl"
    ref = provider.stage(plan, "train", path, hashlib.sha256(path.read_bytes()).hexdigest())
    job = provider.submit(plan, {"train": ref}, "k-unknown")
    fake_openai.jobs[job.id].body["status"] = "archived"  # a status no one documents
    with pytest.raises(ProviderError) as caught:
        provider.status(job)
    assert caught.value.code == "unknown_job_status"
    assert "'archived'" in str(caught.value)
    with pytest.raises(ProviderError, match="'archived'"):
        provider.events(job, None)
    fake_openai.violations.clear()  # the fake answered a status its description lacks


# ---------------------------------------------------------------------- the fake's refusals


def _openai_client(server: FakeOpenAI) -> openai.OpenAI:
    return openai.OpenAI(api_key=API_KEY, base_url=server.base_url, max_retries=0)


@pytest.mark.parametrize(
    ("metadata", "code", "param", "words"),
    [
        (
            {f"k{i}": "v" for i in range(17)},
            "object_above_max_properties",
            "metadata",
            "Invalid 'metadata': too many properties. Expected an object with at most 16 "
            "properties, but got an object with 17 properties instead.",
        ),
        (
            {"k" * 65: "v"},
            "string_above_max_length",
            "metadata",
            "Expected a string with maximum length 64, but got a string with length 65",
        ),
        (
            {"k": "v" * 513},
            "string_above_max_length",
            "metadata.k",
            "Invalid 'metadata.k': string too long. Expected a string with maximum length "
            "512, but got a string with length 513 instead.",
        ),
    ],
)
def test_the_fake_refuses_metadata_over_the_documented_limits(
    fake_openai: FakeOpenAI, metadata: dict[str, str], code: str, param: str, words: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        _openai_client(fake_openai).fine_tuning.jobs.create(
            model=BASE_MODEL, training_file="file-1", metadata=metadata
        )
    error = caught.value
    assert (error.status_code, error.code, error.param) == (400, code, param)
    assert words in error.message
    assert not fake_openai.jobs


def test_the_fake_refuses_what_the_description_does_not_allow(fake_openai: FakeOpenAI) -> None:
    if not OPENAI_SPEC.is_file():  # the fake checks requests against it, when it is there
        pytest.skip(f"OpenAI's API description is not at {OPENAI_SPEC} (set TUNEFLEET_SPECS)")
    client = _openai_client(fake_openai)
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(model=BASE_MODEL, training_file="file-1", suffix="s" * 65)
    assert (caught.value.code, caught.value.param) == ("string_above_max_length", "suffix")
    assert "Expected a string with maximum length 64, but got a string with length 65" in (
        caught.value.message
    )
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(
            model=BASE_MODEL,
            training_file="file-1",
            method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 51}}},
        )
    assert caught.value.code == "integer_above_max_value"
    assert caught.value.param == "method.supervised.hyperparameters.n_epochs"
    assert "Expected a value <= 50, but got 51 instead." in caught.value.message
    assert len(fake_openai.violations) == 2, "the contract saw both requests break it"
    fake_openai.violations.clear()


def test_the_fake_refuses_uploads_over_8_gb(fake_openai: FakeOpenAI) -> None:
    client = _openai_client(fake_openai)
    kwargs = {"filename": "big.jsonl", "mime_type": "text/jsonl", "purpose": "fine-tune"}
    assert client.uploads.create(bytes=8 * GiB, **kwargs).status == "pending"  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError) as caught:
        client.uploads.create(bytes=9 * GiB, **kwargs)  # type: ignore[arg-type]
    assert (caught.value.status_code, caught.value.param) == (400, "bytes")
    assert "an Upload can accept at most 8 GB in total" in caught.value.message


def test_the_fakes_azure_mode_answers_as_azure_does(fake_openai: FakeOpenAI) -> None:
    client = openai.AzureOpenAI(
        azure_endpoint=fake_openai.base_url.removesuffix("/v1"),
        api_version="2025-04-01-preview",
        api_key=API_KEY,
        max_retries=0,
    )
    train = client.files.create(file=(DATA / "train.jsonl").open("rb"), purpose="fine-tune")
    client.files.retrieve(train.id)  # imported
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL, training_file=train.id, suffix="bot-1", metadata={"k": "v"}
    )
    # Azure keeps no metadata, starts a job `pending`, and its list has no metadata filter.
    assert (job.status, job.metadata, getattr(job, "suffix", None)) == ("pending", None, "bot-1")
    assert [j.id for j in client.fine_tuning.jobs.list(metadata={"k": "other"})] == [job.id]
    assert any("'metadata'" in v for v in fake_openai.violations), "Azure has no metadata"
    assert any("query parameter 'metadata[k]'" in v for v in fake_openai.violations)
    fake_openai.violations.clear()
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(model=BASE_MODEL, training_file=train.id, suffix="s" * 41)
    assert caught.value.code == "invalidPayload"
    assert "up to 40 characters (a-z, A-Z, 0-9,- and _)" in caught.value.message
    kwargs = {"filename": "big.jsonl", "mime_type": "text/jsonl", "purpose": "fine-tune"}
    client.uploads.create(bytes=9 * GiB, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError) as caught:
        client.uploads.create(bytes=10 * GiB, **kwargs)  # type: ignore[arg-type]
    assert caught.value.code == "invalidPayload" and "9 GB" in caught.value.message
