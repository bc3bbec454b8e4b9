"""The Azure ML fake (fake_arm.py) and the body checker (arm_contract.py), driven by the real SDKs.

Everything here talks to 127.0.0.1: azure-ai-ml's generated ``MachineLearningServicesMgmtClient``
and azure-mgmt-monitor's ``MonitorManagementClient`` with ``base_url`` at the fake, azure-ai-ml's
``MLClient`` with its developer override of the management URL (``AZUREML_DEV_URL_MFE``), and the
fake writing job logs and outputs into a real Azurite. Both speak TLS with certificates from one
throwaway CA that ``REQUESTS_CA_BUNDLE`` names. A credential here is a stub whose ``get_token``
hands out a plain string (the fake takes any non-JWT bearer token).

What the tests hold the fake to: the checker passes the SDK's own bodies (built with the
entities' ``_to_rest_object()`` and serialized as the client serializes them) and catches each
kind of mistake; every answer of the fake passes the checker in response mode
(``answer_violations``, checked at teardown); a job lives its documented life and its log grows
with the trainer's metric lines where azure-ai-ml's ``jobs.stream`` reads them; endpoints,
deployments, keys, traffic and scoring behave as Microsoft Learn describes; autoscale settings
round-trip; injected errors reach the SDK as Resource Manager errors.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import trustme
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from tests.providers.azureml import arm_contract
from tests.providers.azureml.azurite import Azurite
from tests.providers.azureml.fake_arm import (
    JOB_STATES,
    RESOURCE_GROUP,
    SUBSCRIPTION,
    WORKSPACE,
    FakeAzureML,
)

from tunefleet_trainer.metrics import read_metric_line

W = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}"
    f"/providers/Microsoft.MachineLearningServices/workspaces/{WORKSPACE}"
)
ENVIRONMENT_ID = f"{W}/environments/tunefleet-trainer/versions/1"
COMPUTE_ID = f"{W}/computes/gpu-cluster"


class StubCredential:
    """A TokenCredential: what the ARM pipeline asks of one (``get_token``)."""

    def __init__(self, token: str = "fake-arm-token") -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)


# --- fixtures -----------------------------------------------------------------------------


# ``ca`` and ``azurite`` (one Azurite for the session) come from conftest.py.


@pytest.fixture
def fake(
    ca: trustme.CA, azurite: Azurite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeAzureML]:
    """The fake, started, with the SDKs trusting its CA; its answers are checked at teardown."""
    server = FakeAzureML(ca=ca, folder=tmp_path / "fake", blob=azurite).start()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.ca_path))
    monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_path))
    try:
        yield server
    finally:
        server.stop()
    assert not server.answer_violations, "\n".join(server.answer_violations)


@pytest.fixture
def client(fake: FakeAzureML) -> Any:
    from azure.ai.ml._restclient.arm_ml_service import MachineLearningServicesMgmtClient

    return MachineLearningServicesMgmtClient(StubCredential(), SUBSCRIPTION, base_url=fake.url)


def _wire(model: Any) -> Any:
    """A generated model as the client puts it on the wire (read-only fields left out)."""
    from azure.ai.ml._restclient.arm_ml_service._utils.model_base import SdkJSONEncoder

    return json.loads(json.dumps(model, cls=SdkJSONEncoder, exclude_readonly=True))


def _job_body(**changes: Any) -> dict[str, Any]:
    """A Command job as the provider sends it (a JSON dict, sent verbatim)."""
    properties: dict[str, Any] = {
        "jobType": "Command",
        "command": "python -m tunefleet_trainer.train --config ${{inputs.config}}",
        "environmentId": ENVIRONMENT_ID,
        "computeId": COMPUTE_ID,
        "experimentName": "tunefleet",
        "displayName": "tunefleet run",
        "inputs": {
            "config": {
                "jobInputType": "uri_file",
                "uri": "azureml://datastores/workspaceblobstore/paths/tunefleet/run1/config.json",
            }
        },
        "outputs": {
            "model": {
                "jobOutputType": "uri_folder",
                "uri": "azureml://datastores/workspaceblobstore/paths/tunefleet/run1/model/",
            }
        },
        "resources": {"instanceCount": 1},
        "limits": {"jobLimitsType": "Command", "timeout": "PT2H"},
        "environmentVariables": {"TUNEFLEET_BASE_MODEL": "Qwen/Qwen2.5-0.5B-Instruct"},
        "tags": {"tunefleet.run": "run1"},
    }
    properties.update(changes)
    return {"properties": properties}


def _sdk_command_job() -> Any:
    from azure.ai.ml import Input, Output
    from azure.ai.ml.entities import CommandJob, JobResourceConfiguration
    from azure.ai.ml.entities._job.job_limits import CommandJobLimits

    return CommandJob(
        name="job-sdk",
        command="python -m tunefleet_trainer.train --config ${{inputs.config}}",
        environment=ENVIRONMENT_ID,
        compute=COMPUTE_ID,
        inputs={
            "config": Input(
                type="uri_file", path="azureml://datastores/workspaceblobstore/paths/c.json"
            )
        },
        outputs={
            "model": Output(
                type="uri_folder", path="azureml://datastores/workspaceblobstore/paths/o/"
            )
        },
        environment_variables={"A": "1"},
        experiment_name="tunefleet",
        resources=JobResourceConfiguration(instance_count=2, shm_size="16g"),
        limits=CommandJobLimits(timeout=3600),
        tags={"a": "b"},
    )


def _sdk_finetuning_job() -> Any:
    from azure.ai.ml import finetuning

    return finetuning.create_finetuning_job(
        task="ChatCompletion",
        training_data="azureml://datastores/workspaceblobstore/paths/t/train.jsonl",
        validation_data="azureml://datastores/workspaceblobstore/paths/t/valid.jsonl",
        hyperparameters={"num_train_epochs": "1", "learning_rate": "0.0001"},
        model="azureml://registries/azureml-meta/models/Llama-3.2-1B-Instruct/versions/1",
        display_name="tunefleet ft",
        name="ft-job",
        experiment_name="tunefleet",
        output_model_name_prefix="tunefleet-llama",
    )


def _sdk_bodies() -> dict[str, Any]:
    """Request bodies azure-ai-ml builds from its entities, by the model they are sent as."""
    from azure.ai.ml.entities import (
        Data,
        Environment,
        ManagedOnlineDeployment,
        ManagedOnlineEndpoint,
        Model,
    )

    data = Data(
        name="train",
        version="1",
        type="uri_file",
        path="azureml://datastores/workspaceblobstore/paths/t/train.jsonl",
    )
    environment = Environment(
        name="trainer", version="1", image="tunefleet.azurecr.io/trainer:0.1.0"
    )
    model = Model(
        name="tuned",
        version="1",
        type="custom_model",
        path="azureml://datastores/workspaceblobstore/paths/o/",
    )
    endpoint = ManagedOnlineEndpoint(name="tunefleet-ep", auth_mode="key", tags={"a": "b"})
    deployment = ManagedOnlineDeployment(
        name="blue",
        endpoint_name="tunefleet-ep",
        model=f"{W}/models/tuned/versions/1",
        environment=f"{W}/environments/vllm/versions/1",
        instance_type="Standard_NC24ads_A100_v4",
        instance_count=1,
    )
    return {
        "JobBase": [_sdk_command_job()._to_rest_object(), _sdk_finetuning_job()._to_rest_object()],
        "DataVersionBase": [data._to_rest_object()],
        "EnvironmentVersion": [environment._to_rest_object()],
        "ModelVersion": [model._to_rest_object()],
        "OnlineEndpoint": [endpoint._to_rest_online_endpoint("swedencentral")],
        "OnlineDeployment": [deployment._to_rest_object("swedencentral")],
    }


def _autoscale(target: str) -> Any:
    from azure.mgmt.monitor.models import (
        AutoscaleProfile,
        AutoscaleSettingResource,
        MetricTrigger,
        ScaleAction,
        ScaleCapacity,
        ScaleRule,
    )

    rule = ScaleRule(
        metric_trigger=MetricTrigger(
            metric_name="CpuUtilizationPercentage",
            metric_resource_uri=target,
            time_grain=timedelta(minutes=1),
            statistic="Average",
            time_window=timedelta(minutes=5),
            time_aggregation="Average",
            operator="GreaterThan",
            threshold=70,
        ),
        scale_action=ScaleAction(
            direction="Increase", type="ChangeCount", value="1", cooldown=timedelta(minutes=5)
        ),
    )
    return AutoscaleSettingResource(
        location="swedencentral",
        profiles=[
            AutoscaleProfile(
                name="default",
                capacity=ScaleCapacity(minimum="1", maximum="3", default="1"),
                rules=[rule],
            )
        ],
        target_resource_uri=target,
        enabled=True,
    )


def _monitor_wire(model: Any) -> Any:
    from azure.mgmt.monitor import models
    from azure.mgmt.monitor._utils.serialization import Serializer

    classes = {k: v for k, v in vars(models).items() if isinstance(v, type)}
    return Serializer(classes).body(model, type(model).__name__)


# --- the checker ----------------------------------------------------------------------------


def test_checker_passes_the_sdks_own_bodies() -> None:
    for model, bodies in _sdk_bodies().items():
        for body in bodies:
            assert arm_contract.violations(model, _wire(body)) == [], model
    autoscale = _monitor_wire(_autoscale(f"{W}/onlineEndpoints/ep/deployments/blue"))
    assert autoscale["properties"]["profiles"][0]["capacity"] == {
        "minimum": "1",
        "maximum": "3",
        "default": "1",
    }
    assert arm_contract.violations("AutoscaleSettingResource", autoscale, package="monitor") == []


def test_checker_names_each_kind_of_mistake() -> None:
    body = _job_body()
    properties = body["properties"]
    properties["colour"] = "blue"  # unknown property
    properties["status"] = "Running"  # read-only
    del properties["environmentId"]  # required
    properties["resources"]["instanceCount"] = "2"  # an int sent as a string
    properties["inputs"]["config"] = "azureml://x"  # a string where an object belongs
    properties["outputs"]["model"]["jobOutputType"] = "folder"  # unknown discriminator
    properties["limits"]["timeout"] = "7200"  # not an ISO 8601 duration
    found = arm_contract.violations("JobBase", body)
    assert sorted(found) == sorted(
        [
            "$.properties.colour: unknown property of CommandJob",
            "$.properties.status: read-only property of CommandJob sent",
            "$.properties.environmentId: required property of CommandJob missing",
            "$.properties.resources.instanceCount: expected integer, got string '2'",
            "$.properties.inputs.config: expected an object (JobInput), got string 'azureml://x'",
            "$.properties.outputs.model.jobOutputType: unknown JobOutput kind 'folder' (known:"
            " custom_model, mlflow_model, mltable, triton_model, uri_file, uri_folder)",
            "$.properties.limits.timeout: '7200' is not an ISO 8601 duration (e.g. PT30M)",
        ]
    )
    assert arm_contract.violations("JobBase", {"properties": {"jobType": "Notebook"}}) == [
        "$.properties.jobType: unknown JobBaseProperties kind 'Notebook'"
        " (known: AutoML, Command, FineTuning, Pipeline, Spark, Sweep)"
    ]
    # A Literal (the kind of a concrete class) is held to its value; an extensible enum
    # (Union[str, Enum]) takes any string, as Azure's "known values" do.
    endpoint = {
        "location": "swedencentral",
        "properties": {"authMode": "SomethingNew", "keys": {"primaryKey": 1}},
    }
    assert arm_contract.violations("OnlineEndpoint", endpoint) == [
        "$.properties.keys.primaryKey: expected string, got integer"
    ]
    # An answer may carry read-only properties, but not write-only ones.
    assert arm_contract.violations("OnlineEndpoint", endpoint, response=True) == [
        "$.properties.keys: write-only property of OnlineEndpointProperties in a response"
    ]


def test_checker_reads_msrest_models_of_azure_monitor() -> None:
    autoscale = _monitor_wire(_autoscale(f"{W}/onlineEndpoints/ep/deployments/blue"))
    autoscale["id"] = "/subscriptions/x"  # read-only
    autoscale["properties"]["profiles"][0]["capacity"]["minimum"] = 1  # a string in the spec
    autoscale["properties"]["colour"] = "blue"
    del autoscale["properties"]["profiles"][0]["rules"][0]["scaleAction"]["cooldown"]
    assert sorted(
        arm_contract.violations("AutoscaleSettingResource", autoscale, package="monitor")
    ) == [
        "$.id: read-only property of AutoscaleSettingResource sent",
        "$.properties.colour: unknown property of AutoscaleSettingResource",
        "$.properties.profiles[0].capacity.minimum: expected string, got integer",
        "$.properties.profiles[0].rules[0].scaleAction.cooldown: required property of ScaleAction missing",
    ]
    assert arm_contract.violations(
        "AutoscaleSettingResource", {"location": "x"}, package="monitor"
    ) == ["$.properties.profiles: required property of AutoscaleSettingResource missing"]


# --- the control plane ------------------------------------------------------------------


def test_workspace_datastore_and_compute_answer_as_azure(fake: FakeAzureML, client: Any) -> None:
    workspace = client.workspaces.get(RESOURCE_GROUP, WORKSPACE)
    assert workspace.location == "swedencentral"
    assert workspace.properties.public_network_access == "Enabled"
    assert workspace.properties.managed_network.isolation_mode == "Disabled"
    assert workspace.properties.discovery_url == f"{fake.url}/discovery"

    fake.workspace_settings(
        public_network_access="Disabled",
        isolation_mode="AllowOnlyApprovedOutbound",
        cmk_key="https://tunefleet-kv.vault.azure.net/keys/cmk/0123",
        location="westeurope",
    )
    locked = client.workspaces.get(RESOURCE_GROUP, WORKSPACE)
    assert locked.location == "westeurope"
    assert locked.properties.public_network_access == "Disabled"
    assert locked.properties.managed_network.isolation_mode == "AllowOnlyApprovedOutbound"
    assert locked.properties.encryption.status == "Enabled"
    assert locked.properties.encryption.key_vault_properties.key_identifier.endswith(
        "/keys/cmk/0123"
    )

    store = client.datastores.get(RESOURCE_GROUP, WORKSPACE, "workspaceblobstore")
    assert store.properties.datastore_type == "AzureBlob"
    assert store.properties.account_name == fake.blob.account
    assert store.properties.container_name == fake.datastore_container()
    assert (store.properties.endpoint, store.properties.protocol) == ("core.windows.net", "https")
    assert store.properties.is_default is True
    assert (
        client.datastores.list_secrets(RESOURCE_GROUP, WORKSPACE, "workspaceblobstore").key
        == fake.blob.key
    )
    [default] = list(client.datastores.list(RESOURCE_GROUP, WORKSPACE, is_default=True))
    assert default.name == "workspaceblobstore"

    fake.add_compute(
        "cpu",
        vm_size="Standard_DS3_v2",
        max_nodes=4,
        subnet=f"{W}/subnets/s",
        enable_node_public_ip=False,
    )
    cluster = client.compute.get(RESOURCE_GROUP, WORKSPACE, "cpu").properties.properties
    assert (cluster.vm_size, cluster.scale_settings.max_node_count) == ("Standard_DS3_v2", 4)
    assert cluster.enable_node_public_ip is False and cluster.subnet.id.endswith("/subnets/s")
    with pytest.raises(ResourceNotFoundError):
        client.compute.get(RESOURCE_GROUP, WORKSPACE, "nowhere")
    assert {r.api_version for r in fake.requests if r.path.startswith(W)} == {"2025-12-01"}


def test_resource_manager_wants_a_bearer_token_for_itself(fake: FakeAzureML) -> None:
    url = f"{fake.url}{W}?api-version=2025-12-01"
    bare = requests.get(url, timeout=10)
    assert bare.status_code == 401
    assert bare.json()["error"]["code"] == "AuthenticationFailed"

    def jwt(audience: str) -> str:
        def part(data: dict[str, Any]) -> str:
            return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

        claims = {"aud": audience, "exp": int(time.time()) + 600}
        return f"{part({'alg': 'RS256'})}.{part(claims)}.c2ln"

    storage = requests.get(
        url, headers={"Authorization": f"Bearer {jwt('https://storage.azure.com')}"}, timeout=10
    )
    assert storage.status_code == 401
    assert storage.json()["error"]["code"] == "InvalidAuthenticationTokenAudience"
    arm = requests.get(
        url, headers={"Authorization": f"Bearer {jwt('https://management.azure.com/')}"}, timeout=10
    )
    assert arm.status_code == 200
    no_version = requests.get(f"{fake.url}{W}", headers={"Authorization": "Bearer x"}, timeout=10)
    assert no_version.json()["error"]["code"] == "MissingApiVersionParameter"


def test_assets_register_and_versions_are_immutable(fake: FakeAzureML, client: Any) -> None:
    data = {
        "properties": {
            "dataType": "uri_file",
            "dataUri": "azureml://datastores/workspaceblobstore/paths/t/train.jsonl",
        }
    }
    created = client.data_versions.create_or_update(RESOURCE_GROUP, WORKSPACE, "train", "1", data)
    assert created.properties.data_uri.endswith("train.jsonl")
    assert created.system_data.created_at is not None
    again = client.data_versions.create_or_update(
        RESOURCE_GROUP,
        WORKSPACE,
        "train",
        "1",
        {**data, "properties": {**data["properties"], "description": "d"}},
    )
    assert again.properties.description == "d"
    other = {
        "properties": {
            **data["properties"],
            "dataUri": "azureml://datastores/workspaceblobstore/paths/other.jsonl",
        }
    }
    with pytest.raises(HttpResponseError) as conflict:
        client.data_versions.create_or_update(RESOURCE_GROUP, WORKSPACE, "train", "1", other)
    assert conflict.value.status_code == 409
    image = {"properties": {"image": "tunefleet.azurecr.io/trainer:0.1.0"}}
    environment = client.environment_versions.create_or_update(
        RESOURCE_GROUP, WORKSPACE, "trainer", "1", image
    )
    assert environment.properties.image == "tunefleet.azurecr.io/trainer:0.1.0"
    model = {
        "properties": {
            "modelType": "custom_model",
            "modelUri": "azureml://datastores/workspaceblobstore/paths/o/",
        }
    }
    client.model_versions.create_or_update(RESOURCE_GROUP, WORKSPACE, "tuned", "3", model)
    assert (
        client.model_containers.get(RESOURCE_GROUP, WORKSPACE, "tuned").properties.next_version
        == "4"
    )
    with pytest.raises(ResourceNotFoundError):
        client.model_versions.get(RESOURCE_GROUP, WORKSPACE, "tuned", "9")
    # A name Azure refuses: "Resource name can only contain alphanumeric characters, dashes,
    # and underscores".
    with pytest.raises(HttpResponseError) as refused:
        client.model_versions.create_or_update(
            RESOURCE_GROUP, WORKSPACE, "qwen2.5-0.5b", "1", model
        )
    assert refused.value.error.code == "RequestInvalid"
    assert fake.violations == [
        f"PUT {W}/models/qwen2.5-0.5b/versions/1: name 'qwen2.5-0.5b' does not match ^[A-Za-z0-9_-]{{1,255}}$"
    ]


def test_a_job_lives_its_life_and_logs_the_trainers_lines(fake: FakeAzureML, client: Any) -> None:
    created = client.jobs.create_or_update(RESOURCE_GROUP, WORKSPACE, "run1", _job_body())
    assert created.properties.status == "NotStarted"
    assert created.id == f"{W}/jobs/run1" and created.system_data.created_by
    seen = [created.properties.status]
    sizes = []
    while seen[-1] != "Completed":
        seen.append(client.jobs.get(RESOURCE_GROUP, WORKSPACE, "run1").properties.status)
        if seen[-1] in ("Running", "Finalizing"):
            sizes.append(len(requests.get(fake.log_url("run1"), timeout=10).text))
        assert len(seen) < 20
    assert [s for i, s in enumerate(seen) if i == 0 or s != seen[i - 1]] == list(JOB_STATES)
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]  # the log grows while it runs

    log = requests.get(fake.log_url("run1"), timeout=10).text
    metrics = [m for m in map(read_metric_line, log.splitlines()) if m is not None]
    assert [m["step"] for m in metrics] == list(range(1, fake.steps + 1))
    losses = [m["train_loss"] for m in metrics]
    assert losses == sorted(losses, reverse=True)
    assert "tunefleet trainer starting" in log

    manifest = json.loads(
        fake.blob_text(fake.datastore_container(), "tunefleet/run1/model/manifest.json")
    )
    assert manifest["artifacts"] == {"adapter": "adapter"} and manifest["steps"] == fake.steps
    assert fake.blob_text(
        fake.datastore_container(), "tunefleet/run1/model/adapter/adapter_config.json"
    )
    assert fake.violations == []
    assert {r.api_version for r in fake.requests if "/jobs/" in r.path} == {"2025-12-01"}


def test_run_history_hands_out_the_log_as_azure_ml_streams_it(
    fake: FakeAzureML, client: Any
) -> None:
    client.jobs.create_or_update(RESOURCE_GROUP, WORKSPACE, "run2", _job_body())
    discovery_url = client.workspaces.get(RESOURCE_GROUP, WORKSPACE).properties.discovery_url
    discovery = requests.get(
        discovery_url, timeout=10
    ).json()  # unauthenticated, as azure-ai-ml reads it
    details_url = f"{discovery['api']}/history/v1.0{W}/runs/run2/details"
    headers = {"Authorization": "Bearer fake-arm-token"}
    statuses: list[str] = []
    logs: dict[str, str] = {}
    for _ in range(12):
        details = requests.get(details_url, headers=headers, timeout=10).json()
        statuses.append(details["status"])
        logs = details["logFiles"] or logs
        if details["status"] == "Completed":
            break
    assert statuses[-1] == "Completed" and "Running" in statuses
    assert list(logs) == ["user_logs/std_log.txt"]
    assert "tunefleet.metric " in requests.get(logs["user_logs/std_log.txt"], timeout=10).text
    missing = requests.get(
        f"{fake.url}/history/v1.0{W}/runs/nope/details", headers=headers, timeout=10
    )
    assert missing.status_code == 404


@pytest.mark.slow  # imports all of azure.ai.ml (5-10 s)
def test_azure_ml_streams_a_running_jobs_log(
    fake: FakeAzureML, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """azure-ai-ml's own ``jobs.stream``: workspace -> discoveryUrl -> RunHistory details ->
    logFiles SAS URL of user_logs/std_log.txt, until the job is no longer running."""
    from azure.ai.ml import MLClient
    from azure.ai.ml.operations import _job_ops_helper

    monkeypatch.setenv("AZUREML_DEV_URL_MFE", fake.url)
    monkeypatch.setattr(_job_ops_helper, "_wait_before_polling", lambda _seconds: 0)
    ml = MLClient(StubCredential(), SUBSCRIPTION, RESOURCE_GROUP, WORKSPACE)
    from azure.ai.ml._restclient.arm_ml_service import MachineLearningServicesMgmtClient

    arm = MachineLearningServicesMgmtClient(StubCredential(), SUBSCRIPTION, base_url=fake.url)
    arm.jobs.create_or_update(RESOURCE_GROUP, WORKSPACE, "run3", _job_body())
    ml.jobs.stream("run3")
    out = capsys.readouterr().out
    assert "Streaming user_logs/std_log.txt" in out
    assert out.count("tunefleet.metric ") == fake.steps
    assert "Execution Summary" in out
    assert fake.jobs["run3"].status == "Completed"


def test_a_taken_job_name_refuses_another_definition(fake: FakeAzureML, client: Any) -> None:
    # An output without a uri: Azure fills in its default location, and a later PUT of the
    # same body is still the same job.
    unplaced = {"model": {"jobOutputType": "uri_folder"}}
    created = client.jobs.create_or_update(
        RESOURCE_GROUP, WORKSPACE, "run4", _job_body(outputs=unplaced)
    )
    assert created.properties.outputs["model"].uri == (
        "azureml://datastores/workspaceblobstore/paths/azureml/run4/model/"
    )
    same = client.jobs.create_or_update(
        RESOURCE_GROUP, WORKSPACE, "run4", _job_body(outputs=unplaced, tags={"x": "y"})
    )
    assert same.properties.tags == {"x": "y"}  # tags may change
    with pytest.raises(HttpResponseError) as refused:
        client.jobs.create_or_update(
            RESOURCE_GROUP,
            WORKSPACE,
            "run4",
            _job_body(outputs=unplaced, command="python other.py"),
        )
    assert refused.value.status_code == 400
    assert refused.value.error.code == "UserError"
    assert "A job with this name already exists" in refused.value.error.message
    with pytest.raises(ResourceNotFoundError) as missing:
        client.jobs.get(RESOURCE_GROUP, WORKSPACE, "never-created")
    assert missing.value.error.code == "UserError"


def test_cancel_is_a_long_running_operation(fake: FakeAzureML, client: Any) -> None:
    client.jobs.create_or_update(RESOURCE_GROUP, WORKSPACE, "run5", _job_body())
    fake.advance("run5", to="Running")
    poller = client.jobs.begin_cancel(RESOURCE_GROUP, WORKSPACE, "run5")
    assert fake.jobs["run5"].status == "CancelRequested"
    poller.result()
    assert client.jobs.get(RESOURCE_GROUP, WORKSPACE, "run5").properties.status == "Canceled"
    polled = [r.path for r in fake.requests if "mfeOperationResults" in r.path]
    assert len(polled) >= 2  # 202 while in progress, then 200
    assert "The job was canceled." in fake.log_text("run5")


def test_injected_errors_reach_the_sdk_as_resource_manager_errors(
    fake: FakeAzureML, client: Any
) -> None:
    fake.fail_next(
        "PUT", r"/jobs/run6$", 400, "QuotaExceeded", "Not enough quota.", inner=["QuotaExceeded"]
    )
    with pytest.raises(HttpResponseError) as failed:
        client.jobs.create_or_update(RESOURCE_GROUP, WORKSPACE, "run6", _job_body())
    assert (failed.value.status_code, failed.value.error.code) == (400, "QuotaExceeded")
    assert failed.value.error.message == "Not enough quota."
    created = client.jobs.create_or_update(RESOURCE_GROUP, WORKSPACE, "run6", _job_body())
    assert created.properties.status == "NotStarted"  # once only


def test_a_job_over_the_vcpu_quota_fails_as_azure_words_it(fake: FakeAzureML, client: Any) -> None:
    fake.vcpu_quota = 12  # an A100 node has 24
    client.jobs.create_or_update(RESOURCE_GROUP, WORKSPACE, "run7", _job_body())
    assert fake.advance("run7", to="Running") == "Failed"
    details = requests.get(
        f"{fake.url}/history/v1.0{W}/runs/run7/details",
        headers={"Authorization": "Bearer t"},
        timeout=10,
    ).json()
    assert "JobNodeCountExceedsCoreQuota" in details["error"]["error"]["message"]
    assert "Standard NCADSA100v4 Family vCPU quota of 12" in details["error"]["error"]["message"]


# --- online endpoints, scoring, autoscale ------------------------------------------------


def _endpoint(
    traffic: dict[str, int] | None = None, mirror: dict[str, int] | None = None
) -> dict[str, Any]:
    properties: dict[str, Any] = {"authMode": "Key", "traffic": traffic or {}}
    if mirror is not None:
        properties["mirrorTraffic"] = mirror
    return {
        "location": "swedencentral",
        "identity": {"type": "SystemAssigned"},
        "properties": properties,
    }


def _deployment(model: str = "tuned") -> dict[str, Any]:
    return {
        "location": "swedencentral",
        "sku": {"name": "Default", "capacity": 1},
        "properties": {
            "endpointComputeType": "Managed",
            "model": f"{W}/models/{model}/versions/1",
            "environmentId": f"{W}/environments/vllm/versions/1",
            "instanceType": "Standard_NC24ads_A100_v4",
            "scaleSettings": {"scaleType": "Default"},
            "requestSettings": {"requestTimeout": "PT90S", "maxConcurrentRequestsPerInstance": 4},
        },
    }


def _chat(fake: FakeAzureML, endpoint: str, key: str, **headers: str) -> requests.Response:
    body = {
        "model": "tuned",
        "messages": [{"role": "user", "content": "hello there"}],
        "max_tokens": 64,
    }
    return requests.post(
        fake.endpoints[endpoint]["properties"]["scoringUri"],
        json=body,
        headers={"Authorization": f"Bearer {key}", **headers},
        timeout=10,
    )


def test_an_endpoint_serves_its_deployments_by_traffic_and_by_name(
    fake: FakeAzureML, client: Any
) -> None:
    ops, deps = client.online_endpoints, client.online_deployments
    created = ops.begin_create_or_update(
        RESOURCE_GROUP, WORKSPACE, "tunefleet-ep", _endpoint()
    ).result()
    assert created.properties.provisioning_state == "Succeeded"
    assert created.properties.scoring_uri == f"{fake.url}/score/tunefleet-ep"
    # Resource Manager's protocol: 201 with Azure-AsyncOperation, polled until Succeeded.
    assert any("mfeOperationsStatus" in r.path for r in fake.requests)
    for name in ("blue", "green"):
        deployment = deps.begin_create_or_update(
            RESOURCE_GROUP, WORKSPACE, "tunefleet-ep", name, _deployment()
        ).result()
        assert deployment.properties.provisioning_state == "Succeeded"
        assert deployment.properties.scale_settings.scale_type == "Default"
    ops.begin_create_or_update(
        RESOURCE_GROUP,
        WORKSPACE,
        "tunefleet-ep",
        _endpoint({"blue": 100, "green": 0}, {"green": 50}),
    ).result()
    keys = ops.list_keys(RESOURCE_GROUP, WORKSPACE, "tunefleet-ep")
    assert keys.primary_key and keys.secondary_key and keys.primary_key != keys.secondary_key

    answers = [_chat(fake, "tunefleet-ep", keys.primary_key) for _ in range(20)]
    assert {a.status_code for a in answers} == {200}
    assert {a.headers["azureml-model-deployment"] for a in answers} == {"blue"}
    reply = answers[0].json()
    assert reply["choices"][0]["message"]["content"] == "[blue] hello there"
    assert reply["choices"][0]["finish_reason"] == "stop"
    assert reply["usage"]["completion_tokens"] == 3
    mirrored = [s for s in fake.scored if s.mirrored]
    assert mirrored and {s.deployment for s in mirrored} == {"green"}
    assert 0 < len(mirrored) < 20  # about half of them

    named = _chat(fake, "tunefleet-ep", keys.secondary_key, **{"azureml-model-deployment": "green"})
    assert named.json()["choices"][0]["message"]["content"] == "[green] hello there"
    assert len([s for s in fake.scored if s.mirrored]) == len(
        mirrored
    )  # a named request is not mirrored
    assert _chat(fake, "tunefleet-ep", "wrong-key").status_code == 401
    assert fake.violations == []


def test_traffic_rules_of_azure_ml_are_enforced(fake: FakeAzureML, client: Any) -> None:
    ops, deps = client.online_endpoints, client.online_deployments
    ops.begin_create_or_update(RESOURCE_GROUP, WORKSPACE, "rules-ep", _endpoint()).result()
    deps.begin_create_or_update(
        RESOURCE_GROUP, WORKSPACE, "rules-ep", "blue", _deployment()
    ).result()
    for traffic, mirror in (
        ({"blue": 90}, None),
        ({"blue": 100}, {"blue": 10}),
        ({"blue": 100, "gone": 0}, None),
    ):
        with pytest.raises(HttpResponseError) as refused:
            ops.begin_create_or_update(
                RESOURCE_GROUP, WORKSPACE, "rules-ep", _endpoint(traffic, mirror)
            ).result()
        assert refused.value.status_code == 400
    assert len(fake.violations) == 3
    with pytest.raises(HttpResponseError):
        ops.begin_create_or_update(RESOURCE_GROUP, WORKSPACE, "ab", _endpoint()).result()
    assert "endpoint name 'ab'" in fake.violations[-1]


def test_endpoints_and_deployments_are_deleted_as_long_running_operations(
    fake: FakeAzureML, client: Any
) -> None:
    ops, deps = client.online_endpoints, client.online_deployments
    ops.begin_create_or_update(RESOURCE_GROUP, WORKSPACE, "gone-ep", _endpoint()).result()
    deps.begin_create_or_update(
        RESOURCE_GROUP, WORKSPACE, "gone-ep", "blue", _deployment()
    ).result()
    deps.begin_delete(RESOURCE_GROUP, WORKSPACE, "gone-ep", "blue").result()
    with pytest.raises(ResourceNotFoundError) as missing:
        deps.get(RESOURCE_GROUP, WORKSPACE, "gone-ep", "blue")
    assert missing.value.error.code == "NotFound"
    poller = ops.begin_delete(RESOURCE_GROUP, WORKSPACE, "gone-ep")
    assert fake.endpoints["gone-ep"]["properties"]["provisioningState"] == "Deleting"
    poller.result()
    with pytest.raises(ResourceNotFoundError):
        ops.get(RESOURCE_GROUP, WORKSPACE, "gone-ep")
    assert "gone-ep" not in fake.endpoints


def test_autoscale_settings_round_trip_through_azure_monitor(
    fake: FakeAzureML, client: Any
) -> None:
    from azure.mgmt.monitor import MonitorManagementClient

    client.online_endpoints.begin_create_or_update(
        RESOURCE_GROUP, WORKSPACE, "scale-ep", _endpoint()
    ).result()
    client.online_deployments.begin_create_or_update(
        RESOURCE_GROUP, WORKSPACE, "scale-ep", "blue", _deployment()
    ).result()
    target = f"{W}/onlineEndpoints/scale-ep/deployments/blue"
    monitor = MonitorManagementClient(StubCredential(), SUBSCRIPTION, base_url=fake.url)
    made = monitor.autoscale_settings.create_or_update(
        RESOURCE_GROUP, "scale-ep-blue", _autoscale(target)
    )
    assert made.target_resource_uri == target and made.profiles[0].capacity.maximum == "3"
    read = monitor.autoscale_settings.get(RESOURCE_GROUP, "scale-ep-blue")
    assert read.profiles[0].rules[0].metric_trigger.threshold == 70
    monitor.autoscale_settings.delete(RESOURCE_GROUP, "scale-ep-blue")
    with pytest.raises(ResourceNotFoundError) as missing:
        monitor.autoscale_settings.get(RESOURCE_GROUP, "scale-ep-blue")
    assert missing.value.error.code == "ResourceNotFound"
    versions = {r.api_version for r in fake.requests if "autoscalesettings" in r.path.lower()}
    assert versions == {"2022-10-01"}
    assert fake.violations == []

    monitor.autoscale_settings.create_or_update(
        RESOURCE_GROUP, "stray", _autoscale(f"{W}/onlineEndpoints/x/deployments/y")
    )
    assert fake.violations and "is not a deployment of this workspace" in fake.violations[0]


def test_a_serverless_fine_tuning_job_registers_its_model(fake: FakeAzureML, client: Any) -> None:
    job = _sdk_finetuning_job()._to_rest_object()
    created = client.jobs.create_or_update(RESOURCE_GROUP, WORKSPACE, "ft-job", job)
    assert created.properties.job_type == "FineTuning"
    assert fake.advance("ft-job", to="Completed") == "Completed"
    model = client.model_versions.get(RESOURCE_GROUP, WORKSPACE, "tunefleet-llama", "1")
    assert model.properties.job_name == "ft-job"
    uri = model.properties.model_uri
    assert uri == "azureml://datastores/workspaceblobstore/paths/azureml/ft-job/registered_model/"
    assert fake.blob_text(
        fake.datastore_container(), "azureml/ft-job/registered_model/manifest.json"
    )
    assert fake.violations == []


def test_a_job_can_be_made_to_fail(fake: FakeAzureML, client: Any) -> None:
    client.jobs.create_or_update(RESOURCE_GROUP, WORKSPACE, "run8", _job_body())
    fake.advance("run8", to="Running")
    fake.fail_job("run8", "UserError", "User program failed with ValueError: bad config")
    assert client.jobs.get(RESOURCE_GROUP, WORKSPACE, "run8").properties.status == "Failed"
    assert fake.jobs["run8"].error == {
        "code": "UserError",
        "message": "User program failed with ValueError: bad config",
    }
    assert "Error: User program failed" in requests.get(fake.log_url("run8"), timeout=10).text
