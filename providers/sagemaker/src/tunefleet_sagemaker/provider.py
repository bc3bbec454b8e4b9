"""The SageMaker provider: training jobs running tunefleet's trainer image, and endpoints.

What each contract step does here::

    plan      the exact CreateTrainingJob request (VpcConfig, KMS keys, spot with a
              checkpoint location, tags...), what the options lack for the placement
              policy, and an instance-hour estimate; no network, no credentials
    stage     S3 object <prefix>/datasets/<sha256>.jsonl, SSE-KMS with the policy's key,
              multipart and concurrent, reused when already there; the bucket must be in
              the target's region
    find      DescribeTrainingJob of the name derived from the run key
    submit    CreateTrainingJob exactly as planned, URIs and run key filled in
    status    DescribeTrainingJob (primary and secondary status, billable seconds)
    events    the trainer's lines in CloudWatch Logs and the secondary status transitions
    cancel    StopTrainingJob
    artifacts the model.tar.gz S3 URI and the checkpoint prefix
    deploy    CreateModel, CreateEndpointConfig, CreateEndpoint, waiting until InService;
              invoke through sagemaker-runtime; delete_endpoint deletes all three

boto3 is imported by the first method that talks to AWS.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel

from tunefleet.errors import CapabilityError, ProviderError
from tunefleet.events import CostEvent, Event, EventPage, JobState, StatusEvent
from tunefleet.provider import (
    ArtifactRef,
    Capabilities,
    ChatReply,
    ChatRequest,
    CostEstimate,
    DatasetRef,
    EndpointRef,
    JobRef,
    JobStatus,
    NativeRequest,
    Plan,
    PlanRequest,
    TrainingEstimate,
    UploadProgress,
    fill_placeholders,
)
from tunefleet.spec import EndpointSpec
from tunefleet_sagemaker import pricing
from tunefleet_sagemaker._aws import PROVIDER, client, error_code, translated
from tunefleet_sagemaker._events import LOG_GROUP, Cursor, job_state, log_event, transition_event
from tunefleet_sagemaker._serving import ENDPOINT, MODEL, MODEL_DATA, endpoint_requests
from tunefleet_sagemaker._serving import unmet as serving_unmet
from tunefleet_sagemaker._training import dataset_key, fill, job_name, training_request, unmet
from tunefleet_sagemaker.options import SageMakerOptions

__all__ = ["SageMakerProvider"]

MiB = 1 << 20
UPLOAD_CONCURRENCY = 8
CONSOLE_URL = "https://{region}.console.aws.amazon.com/sagemaker/home?region={region}#/jobs/{name}"
ENDPOINT_WAIT_SECONDS = 30 * 60


class SageMakerProvider:
    """Trains with tunefleet's trainer on SageMaker and serves the result on endpoints."""

    name: ClassVar[str] = PROVIDER
    options_model: ClassVar[type[BaseModel]] = SageMakerOptions

    def __init__(self) -> None:
        self._buckets_checked: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ planning

    def capabilities(self, options: BaseModel | None = None) -> Capabilities:
        return Capabilities(
            methods=frozenset({"supervised", "dpo"}),
            adapters=frozenset({"full", "lora", "qlora"}),
            regions=pricing.REGIONS,
            private_network=True,
            customer_managed_keys=True,
            spot=True,
            instance_types=True,
            multi_node=True,
            endpoints=True,
            autoscaling=True,
            traffic_split=True,
            tags=True,
        )

    def estimate_training(
        self, base_model: str, examples: int, billable_tokens: int, epochs: int | None
    ) -> TrainingEstimate:
        chosen = epochs or 3
        return TrainingEstimate(
            provider=self.name,
            epochs=chosen,
            epochs_source="spec" if epochs else "provider default",
            trained_tokens=billable_tokens * chosen,
            basis="billed per instance-hour, not per token (see `tunefleet plan`)",
        )

    def _cost(
        self, request: PlanRequest, options: SageMakerOptions, body: dict[str, Any], epochs: int
    ) -> tuple[CostEstimate | None, list[str]]:
        target = request.target
        train = request.datasets.get("train")
        resources = body["ResourceConfig"]
        instance, count = resources["InstanceType"], resources["InstanceCount"]
        priced = (
            (options.price_per_hour, "options")
            if options.price_per_hour is not None
            else pricing.hourly_price(instance, target.region or "us-east-1")
        )
        speed = options.tokens_per_second or pricing.throughput(instance)
        if priced is None or speed is None or train is None or train.billable_tokens is None:
            return None, [
                f"no price or throughput known for {instance}; set options.price_per_hour and options.tokens_per_second"
            ]
        price, source = priced
        spot = bool(body.get("EnableManagedSpotTraining"))
        if spot:
            price *= 1 - options.spot_discount
        tokens = train.billable_tokens * epochs
        hours = pricing.STARTUP_HOURS + tokens / (speed * count) / 3600
        amount = hours * count * price
        basis = (
            f"{hours:.2f} h x {count} x {instance} at ${price:.3f}/h"
            f"{' (spot, assumed ' + format(options.spot_discount, '.0%') + ' off)' if spot else ''}"
            f"; {tokens:,} tokens at an assumed {speed:,.0f} tokens/s per instance; price from {source}"
        )
        return CostEstimate(
            amount=amount,
            basis=basis,
            price_date=None if options.price_per_hour is not None else pricing.PRICE_DATE,
        ), []

    def plan(self, request: PlanRequest) -> Plan:
        spec, target = request.spec, request.target
        options = request.options
        assert isinstance(options, SageMakerOptions)
        roles = ["train"] + (["validation"] if spec.dataset.validation is not None else [])
        body = training_request(spec, target, options, roles)
        requests = []
        for role in roles:
            facts = request.datasets.get(role)
            key = dataset_key(options, facts.sha256 if facts and facts.sha256 else "<sha256>")
            put: dict[str, Any] = {"Bucket": options.bucket, "Key": key}
            if options.kms_key_id:
                put.update(ServerSideEncryption="aws:kms", SSEKMSKeyId=options.kms_key_id)
            requests.append(
                NativeRequest(
                    service="s3",
                    operation="PutObject",
                    body=put,
                    purpose=f"upload the {role} dataset (skipped when the object is there)",
                )
            )
        requests.append(
            NativeRequest(
                service="sagemaker",
                operation="CreateTrainingJob",
                body=body,
                purpose="create the training job",
            )
        )
        tags = [t for t in body["Tags"] if t["Key"] != "tunefleet:run-key"]
        serving_spec = (
            spec
            if spec.endpoint is not None
            else spec.model_copy(update={"endpoint": EndpointSpec()})
        )
        for service, operation, request_body, purpose in endpoint_requests(
            serving_spec, target.region or "us-east-1", options, spec.method.adapter or "lora", tags
        ):
            requests.append(
                NativeRequest(
                    service=service,
                    operation=operation,
                    body=request_body,
                    purpose=f"on deploy: {purpose}",
                )
            )
        epochs = spec.hyperparameters.epochs or 3
        cost, notes = self._cost(request, options, body, epochs)
        if not spec.base_model.startswith("scratch:") and options.subnets:
            notes.append(
                f"the job downloads {spec.base_model} from the Hugging Face Hub: the subnets "
                "need a route out (a NAT gateway)"
            )
        return Plan(
            target=target.key,
            provider=self.name,
            region=target.region,
            options=options.model_dump(mode="json"),
            epochs=epochs,
            requests=requests,
            cost=cost,
            unmet=unmet(spec, target, options) + serving_unmet(spec),
            notes=notes,
        )

    # ------------------------------------------------------------------ helpers

    def _options(self, plan: Plan) -> SageMakerOptions:
        return SageMakerOptions.model_validate(plan.options)

    def _region(self, plan: Plan) -> str:
        if plan.region is None:
            raise ProviderError(self.name, f"target {plan.target!r} has no region")
        return plan.region

    def _planned(self, plan: Plan) -> dict[str, Any]:
        return next(r.body for r in plan.requests if r.operation == "CreateTrainingJob")

    def _ref(self, plan: Plan, name: str, run_key: str) -> JobRef:
        region = self._region(plan)
        planned = self._planned(plan)
        return JobRef(
            provider=self.name,
            target=plan.target,
            id=name,
            region=region,
            run_key=run_key,
            console_url=CONSOLE_URL.format(region=region, name=name),
            scope={
                "checkpoints": job_name(planned["CheckpointConfig"]["S3Uri"], run_key),
                "adapter": json.loads(planned["HyperParameters"]["tunefleet_config"]).get(
                    "adapter", "lora"
                ),
                **(
                    {"price_per_hour": str(self._options(plan).price_per_hour)}
                    if self._options(plan).price_per_hour is not None
                    else {}
                ),
                "instance_type": planned["ResourceConfig"]["InstanceType"],
                "instance_count": str(planned["ResourceConfig"]["InstanceCount"]),
            },
        )

    def _check_bucket(self, s3: Any, bucket: str, region: str) -> None:
        if (bucket, region) in self._buckets_checked:
            return
        with translated(f"locate bucket {bucket}"):
            found = s3.get_bucket_location(Bucket=bucket).get("LocationConstraint")
        actual = {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(found, found)
        if actual != region:
            raise ProviderError(
                self.name,
                f"bucket {bucket} is in {actual}, not in {region} as the target says; "
                "nothing was uploaded",
            )
        self._buckets_checked.add((bucket, region))

    # ------------------------------------------------------------------ staging

    def stage(
        self,
        plan: Plan,
        role: str,
        path: Path,
        sha256: str,
        progress: UploadProgress | None = None,
    ) -> DatasetRef:
        from boto3.s3.transfer import TransferConfig

        options = self._options(plan)
        region = self._region(plan)
        s3 = client("s3", region)
        self._check_bucket(s3, options.bucket, region)
        key = dataset_key(options, sha256)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise ProviderError(self.name, f"cannot read {path}: {exc.strerror}") from None
        uri = f"s3://{options.bucket}/{key}"
        if not self._reusable(s3, options, key, size, sha256):
            extra: dict[str, Any] = {
                "Metadata": {"sha256": sha256},
                "ContentType": "application/jsonl",
            }
            if options.kms_key_id:
                extra.update(ServerSideEncryption="aws:kms", SSEKMSKeyId=options.kms_key_id)
            sent = 0
            lock = threading.Lock()

            def report(chunk: int) -> None:
                nonlocal sent
                with lock:  # the transfer manager calls back from its threads
                    sent += chunk
                    if progress is not None:
                        progress(min(sent, size), size)

            part = options.upload_part_mb * MiB
            config = TransferConfig(
                multipart_threshold=part,
                multipart_chunksize=part,
                max_concurrency=UPLOAD_CONCURRENCY,
            )
            with translated(f"upload {path} to {uri}"):
                s3.upload_file(
                    str(path), options.bucket, key, ExtraArgs=extra, Config=config, Callback=report
                )
            if not self._reusable(s3, options, key, size, sha256):
                raise ProviderError(self.name, f"{uri} does not hold what was uploaded")
        return DatasetRef(provider=self.name, role=role, uri=uri, sha256=sha256, size_bytes=size)

    def _reusable(
        self, s3: Any, options: SageMakerOptions, key: str, size: int, sha256: str
    ) -> bool:
        """True when the object holds this content, encrypted as the options ask."""
        try:
            with translated("head object"):
                head = s3.head_object(Bucket=options.bucket, Key=key)
        except ProviderError as exc:
            if "404" in str(exc) or "NotFound" in str(exc):
                return False
            raise
        if head.get("ContentLength") != size or head.get("Metadata", {}).get("sha256") != sha256:
            return False
        if options.kms_key_id:
            return bool(
                head.get("ServerSideEncryption") == "aws:kms"
                and _same_key(head.get("SSEKMSKeyId", ""), options.kms_key_id)
            )
        return True

    # ------------------------------------------------------------------ jobs

    def _describe(self, region: str, name: str) -> dict[str, Any] | None:
        sagemaker = client("sagemaker", region)
        try:
            with translated(f"describe training job {name}"):
                found: dict[str, Any] = sagemaker.describe_training_job(TrainingJobName=name)
        except ProviderError as exc:
            if "ValidationException" in str(exc) and "find" in str(exc).lower():
                return None
            raise
        return found

    def find(self, plan: Plan, run_key: str) -> JobRef | None:
        name = job_name(self._planned(plan)["TrainingJobName"], run_key)
        found = self._describe(self._region(plan), name)
        return self._ref(plan, name, run_key) if found is not None else None

    def submit(self, plan: Plan, datasets: Mapping[str, DatasetRef], run_key: str) -> JobRef:
        try:
            body = fill(self._planned(plan), {r: d.uri for r, d in datasets.items()}, run_key)
        except ValueError as exc:
            raise ProviderError(self.name, f"cannot create the planned job: {exc}") from None
        sagemaker = client("sagemaker", self._region(plan))
        try:
            with translated("create training job"):
                sagemaker.create_training_job(**body)
        except ProviderError as exc:
            # The name is the run key's: a job of that name is this run's job.
            if "ResourceInUse" not in str(exc) and "already exists" not in str(exc):
                raise
        return self._ref(plan, body["TrainingJobName"], run_key)

    def status(self, job: JobRef) -> JobStatus:
        found = self._describe(str(job.region), job.id)
        if found is None:
            raise ProviderError(self.name, f"training job {job.id} does not exist")
        state = job_state(found)
        return JobStatus(
            state=state,
            message=found.get("FailureReason") or found.get("SecondaryStatus"),
            checked_at=datetime.now(UTC),
            billable_seconds=found.get("BillableTimeInSeconds"),
        )

    def events(self, job: JobRef, cursor: str | None) -> EventPage:
        position = Cursor.decode(cursor)
        found = self._describe(str(job.region), job.id)
        if found is None:
            raise ProviderError(self.name, f"training job {job.id} does not exist")
        logs = self._log_events(job, position)
        transitions = found.get("SecondaryStatusTransitions") or []
        statuses: list[StatusEvent] = [
            transition_event(index, transition)
            for index, transition in enumerate(transitions)
            if index >= position.transitions
        ]
        position.transitions = len(transitions)
        timeline: list[Event] = sorted(
            [*logs, *[s for s in statuses if not s.state.terminal]], key=lambda e: e.time
        )
        timeline += [s for s in statuses if s.state.terminal]
        state = job_state(found)
        reported = [s.state for s in statuses]
        if state.terminal and position.final is None:
            if not reported or reported[-1] != state:
                timeline.append(
                    StatusEvent(
                        id=f"final-{state.value}",
                        time=found.get("TrainingEndTime") or datetime.now(UTC),
                        state=state,
                        message=found.get("FailureReason"),
                    )
                )
            position.final = state.value
            cost = _actual_cost(found, job)
            if cost is not None:
                timeline.append(cost)
        if not timeline:
            return EventPage(events=[], cursor=cursor)
        return EventPage(events=timeline, cursor=position.encode())

    def _log_events(self, job: JobRef, position: Cursor) -> list[Event]:
        logs = client("logs", str(job.region))
        streams: list[str] = []
        try:
            with translated("list log streams"):
                pages = logs.get_paginator("describe_log_streams").paginate(
                    logGroupName=LOG_GROUP, logStreamNamePrefix=f"{job.id}/"
                )
                for page in pages:
                    streams += [s["logStreamName"] for s in page.get("logStreams", [])]
        except ProviderError as exc:
            if "ResourceNotFoundException" in str(exc):
                return []  # no instance has logged yet
            raise
        found: list[Event] = []
        for stream in sorted(streams):
            token, seen = position.streams.get(stream, [None, 0])
            while True:
                arguments: dict[str, Any] = {
                    "logGroupName": LOG_GROUP,
                    "logStreamName": stream,
                    "startFromHead": True,
                }
                if token:
                    arguments["nextToken"] = token
                with translated("read the job's log"):
                    page = logs.get_log_events(**arguments)
                records = page.get("events", [])
                found += [
                    log_event(stream, seen + i, record, job.scope.get("checkpoints", ""))
                    for i, record in enumerate(records)
                ]
                seen += len(records)
                following = page.get("nextForwardToken")
                if not records or following == token:
                    token = following or token
                    break
                token = following
            position.streams[stream] = [token, seen]
        return found

    def cancel(self, job: JobRef) -> None:
        found = self._describe(str(job.region), job.id)
        if found is None or job_state(found).terminal or job_state(found) == JobState.STOPPING:
            return
        sagemaker = client("sagemaker", str(job.region))
        with translated("stop training job"):
            sagemaker.stop_training_job(TrainingJobName=job.id)

    def pause(self, job: JobRef) -> None:
        raise CapabilityError(
            self.name, "SageMaker cannot pause a training job; stopping it keeps its checkpoints"
        )

    def resume(self, job: JobRef) -> None:
        raise CapabilityError(self.name, "SageMaker cannot pause a training job")

    def artifacts(self, job: JobRef) -> list[ArtifactRef]:
        found = self._describe(str(job.region), job.id)
        model = ((found or {}).get("ModelArtifacts") or {}).get("S3ModelArtifacts")
        if not model:
            raise ProviderError(self.name, f"training job {job.id} recorded no model artifact")
        kind = "merged_model" if job.scope.get("adapter") == "full" else "adapter"
        refs = [ArtifactRef(kind=kind, uri=model)]
        if job.scope.get("checkpoints"):
            refs.append(ArtifactRef(kind="checkpoint", uri=job.scope["checkpoints"]))
        return refs

    # ------------------------------------------------------------------ serving

    def deploy(self, plan: Plan, artifact: ArtifactRef, name: str) -> EndpointRef:
        if not artifact.uri.startswith("s3://"):
            raise CapabilityError(self.name, f"serves models in S3, not {artifact.uri}")
        region = self._region(plan)
        sagemaker = client("sagemaker", region)
        # One model and endpoint config per model version: a new version is a new pair.
        version = f"{name}-{hashlib.sha256(artifact.uri.encode()).hexdigest()[:8]}"
        values = {ENDPOINT: name, MODEL: version, MODEL_DATA: artifact.uri}
        planned = {
            r.operation: fill_placeholders(r.body, values)
            for r in plan.requests
            if r.purpose.startswith("on deploy:")
        }
        scaling = client("application-autoscaling", region)
        with translated(f"deploy endpoint {name}"):
            if not _exists(sagemaker.describe_model, ModelName=version):
                sagemaker.create_model(**planned["CreateModel"])
            if not _exists(sagemaker.describe_endpoint_config, EndpointConfigName=version):
                sagemaker.create_endpoint_config(**planned["CreateEndpointConfig"])
            current = _described(sagemaker.describe_endpoint, EndpointName=name)
            if current is None:
                sagemaker.create_endpoint(**planned["CreateEndpoint"])
            elif current["EndpointConfigName"] != version:
                self._roll_out(sagemaker, scaling, region, planned, name, version)
            sagemaker.get_waiter("endpoint_in_service").wait(
                EndpointName=name,
                WaiterConfig={"Delay": 15, "MaxAttempts": ENDPOINT_WAIT_SECONDS // 15},
            )
            described = sagemaker.describe_endpoint(EndpointName=name)
        scope = {"config": version, "model": version}
        if "RegisterScalableTarget" in planned:
            with translated(f"autoscale endpoint {name}"):
                scaling.register_scalable_target(**planned["RegisterScalableTarget"])
                scaling.put_scaling_policy(**planned["PutScalingPolicy"])
            scope["scaling"] = planned["RegisterScalableTarget"]["ResourceId"]
        return EndpointRef(
            provider=self.name,
            name=name,
            region=region,
            url=f"https://runtime.sagemaker.{region}.amazonaws.com/endpoints/{name}/invocations",
            id=described["EndpointArn"],
            scope=scope,
        )

    def _roll_out(
        self,
        sagemaker: Any,
        scaling: Any,
        region: str,
        planned: dict[str, dict[str, Any]],
        name: str,
        version: str,
    ) -> None:
        """Move an existing endpoint to a new model version: as a canary when the spec
        asks (rolled back by its alarms), else all at once (SageMaker's blue/green)."""
        # SageMaker refuses to update a variant that has a scaling policy; deploy registers
        # it again once the endpoint is InService.
        resource = f"endpoint/{name}/variant/primary"
        registered = scaling.describe_scalable_targets(
            ServiceNamespace="sagemaker", ResourceIds=[resource]
        ).get("ScalableTargets")
        if registered:
            scaling.deregister_scalable_target(
                ServiceNamespace="sagemaker",
                ResourceId=resource,
                ScalableDimension="sagemaker:variant:DesiredInstanceCount",
            )
        if "UpdateEndpoint" in planned:
            client("cloudwatch", region).put_metric_alarm(**planned["PutMetricAlarm"])
            sagemaker.update_endpoint(**planned["UpdateEndpoint"])
        else:
            sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=version)

    def shift_traffic(self, endpoint: EndpointRef, weights: Mapping[str, int]) -> None:
        """Set the weights of the endpoint's production variants (by variant name)."""
        sagemaker = client("sagemaker", str(endpoint.region))
        with translated(f"shift traffic on {endpoint.name}"):
            sagemaker.update_endpoint_weights_and_capacities(
                EndpointName=endpoint.name,
                DesiredWeightsAndCapacities=[
                    {"VariantName": variant, "DesiredWeight": float(weight)}
                    for variant, weight in weights.items()
                ],
            )

    def delete_endpoint(self, endpoint: EndpointRef) -> None:
        sagemaker = client("sagemaker", str(endpoint.region))
        if endpoint.scope.get("scaling"):
            scaling = client("application-autoscaling", str(endpoint.region))
            try:
                with translated(f"stop autoscaling {endpoint.name}"):
                    scaling.deregister_scalable_target(
                        ServiceNamespace="sagemaker",
                        ResourceId=endpoint.scope["scaling"],
                        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
                    )
            except ProviderError as exc:
                gone = "ObjectNotFoundException" in str(exc) or "No scalable target" in str(exc)
                if not gone:
                    raise
        for operation, argument, value in (
            (sagemaker.delete_endpoint, "EndpointName", endpoint.name),
            (sagemaker.delete_endpoint_config, "EndpointConfigName", endpoint.scope.get("config")),
            (sagemaker.delete_model, "ModelName", endpoint.scope.get("model")),
        ):
            if not value:
                continue
            try:
                with translated(f"delete {argument} {value}"):
                    operation(**{argument: value})
            except ProviderError as exc:
                if "ValidationException" not in str(exc):  # already gone
                    raise

    def invoke(self, endpoint: EndpointRef, request: ChatRequest) -> ChatReply:
        runtime = client("sagemaker-runtime", str(endpoint.region))
        payload = {
            "messages": request.messages,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
        }
        with translated(f"invoke endpoint {endpoint.name}"):
            answer = runtime.invoke_endpoint(
                EndpointName=endpoint.name,
                ContentType="application/json",
                Accept="application/json",
                Body=json.dumps(payload).encode(),
            )
        raw = answer["Body"].read()
        try:
            body = json.loads(raw)
            choice = body["choices"][0]
            usage = body.get("usage") or {}
            return ChatReply(
                text=choice["message"]["content"] or "",
                finish_reason=choice.get("finish_reason"),
                prompt_tokens=usage.get("prompt_tokens"),
                completion_tokens=usage.get("completion_tokens"),
            )
        except (ValueError, KeyError, IndexError, TypeError):
            raise ProviderError(
                self.name,
                f"endpoint {endpoint.name} answered {raw[:200]!r}, not a chat completion "
                "(is its container the TGI Messages API?)",
            ) from None


def _described(describe: Any, **arguments: str) -> dict[str, Any] | None:
    """What the describe call answers, or None when there is no such resource."""
    try:
        found: dict[str, Any] = describe(**arguments)
    except Exception as exc:
        if error_code(exc) == "ValidationException":
            return None
        raise
    return found


def _exists(describe: Any, **arguments: str) -> bool:
    """True when the describe call finds the resource."""
    return _described(describe, **arguments) is not None


def _same_key(actual: str, wanted: str) -> bool:
    """True when S3's key ARN is the key the options name (by ARN, id or suffix)."""
    return actual == wanted or actual.endswith(wanted.rsplit("/", 1)[-1])


def _actual_cost(found: dict[str, Any], job: JobRef) -> CostEvent | None:
    """Billable seconds x the instance price, for a finished job."""
    seconds = found.get("BillableTimeInSeconds")
    instance = job.scope.get("instance_type")
    if not seconds or not instance:
        return None
    override = job.scope.get("price_per_hour")
    priced = (
        (float(override), "options")
        if override
        else pricing.hourly_price(instance, str(job.region))
    )
    if priced is None:
        return None
    price, _ = priced
    count = int(job.scope.get("instance_count", "1"))
    return CostEvent(
        id="cost-final",
        time=found.get("TrainingEndTime") or datetime.now(UTC),
        amount=seconds / 3600 * price * count,
        basis=f"{seconds:,} billable seconds x {count} x ${price:.3f}/h",
    )
