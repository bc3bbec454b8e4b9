"""The Vertex AI launcher (tunefleet_trainer.cluster): CLUSTER_SPEC, AIP_* and the argv it runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tunefleet_trainer import cluster
from tunefleet_trainer.cluster import (
    Launch,
    Topology,
    fuse_path,
    output_args,
    parse_cluster_spec,
    plan_launch,
    resolve_nproc,
    torchrun_argv,
)
from tunefleet_trainer.errors import TrainerError

CHIEF = "cmle-training-workerpool0-1a2b3c-0:2222"
WORKERS = ["cmle-training-workerpool1-1a2b3c-0:2222", "cmle-training-workerpool1-1a2b3c-1:2222"]
REDUCERS = ["cmle-training-workerpool2-1a2b3c-0:2222", "cmle-training-workerpool2-1a2b3c-1:2222"]


def _spec(kind: str, index: int = 0, **pools: list[str]) -> str:
    """A CLUSTER_SPEC as Vertex sets it (the distributed-training page's shape)."""
    layout = {"workerpool0": [CHIEF], "workerpool1": WORKERS, **pools}
    return json.dumps(
        {
            "cluster": layout,
            "environment": "cloud",
            "task": {"type": kind, "index": index, "trial": ""},
            "job": json.dumps({"worker_pool_specs": []}),
        }
    )


def _no_gpu() -> int:
    return 0


def _gpus(count: int) -> Any:
    return lambda: count


def _never() -> int:
    raise AssertionError("the GPU count is only asked for --nproc-per-node auto")


# ---- topology ---------------------------------------------------------------------------


def test_without_cluster_spec_the_machine_is_one_node() -> None:
    for text in (None, "", "  "):
        assert parse_cluster_spec(text) == Topology(1, 0, None, None)


def test_the_chief_is_node_zero_and_hosts_the_rendezvous() -> None:
    topology = parse_cluster_spec(_spec("workerpool0"))
    assert topology == Topology(
        nnodes=3,
        node_rank=0,
        master_addr="cmle-training-workerpool0-1a2b3c-0",
        master_port=2222,
    )


def test_workerpool1_replicas_follow_the_chief_in_order() -> None:
    assert parse_cluster_spec(_spec("workerpool1", 0)).node_rank == 1
    assert parse_cluster_spec(_spec("workerpool1", 1)).node_rank == 2
    assert parse_cluster_spec(_spec("workerpool1", 1)).master_addr == CHIEF.split(":")[0]


def test_a_chief_alone_is_one_node() -> None:
    spec = json.dumps({"cluster": {"workerpool0": [CHIEF]}, "task": {"type": "workerpool0"}})
    assert parse_cluster_spec(spec).nnodes == 1


def test_reduction_servers_are_not_training_nodes() -> None:
    topology = parse_cluster_spec(_spec("workerpool1", 1, workerpool2=REDUCERS))
    assert (topology.nnodes, topology.node_rank) == (3, 2)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (_spec("workerpool3", workerpool3=["eval-0:2222"]), "evaluator"),
        (_spec("workerpool2", workerpool2=REDUCERS), "reduction-server image"),
        (_spec("workerpool0", workerpool0=[CHIEF, CHIEF]), "exactly one replica, it has 2"),
        (_spec("workerpool1", 2), "workerpool1[2] is not among its 2 replicas"),
        (_spec("chief"), "task.type is 'chief'"),
        (_spec("workerpool1", -1), "task.index is -1"),
        (_spec("workerpool0", workerpool0=["no-port"]), "not host:port"),
        (_spec("workerpool0", workerpool1=["w:x"]), "workerpool1[0] is 'w:x'"),
        ("{not json", "not JSON"),
        ('{"cluster": []}', "no 'cluster' and 'task'"),
    ],
)
def test_a_spec_it_cannot_run_is_one_clear_error(spec: str, message: str) -> None:
    with pytest.raises(TrainerError, match=r"CLUSTER_SPEC|evaluator|workerpool2") as caught:
        parse_cluster_spec(spec)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


# ---- outputs ----------------------------------------------------------------------------


def test_gs_uris_become_fuse_paths() -> None:
    assert fuse_path("gs://tf-out/jobs/7/model/", "AIP_MODEL_DIR") == "/gcs/tf-out/jobs/7/model"
    assert fuse_path("gs://tf-out", "AIP_MODEL_DIR") == "/gcs/tf-out"
    assert fuse_path("gs://b//a//c", "X", root="/mnt/gcs/") == "/mnt/gcs/b/a/c"


@pytest.mark.parametrize("uri", ["s3://b/model", "/gcs/b/model", "gs://", "gs:///model"])
def test_other_locations_are_refused(uri: str) -> None:
    with pytest.raises(TrainerError, match="AIP_MODEL_DIR"):
        fuse_path(uri, "AIP_MODEL_DIR")


def test_output_dirs_come_from_aip_variables_unless_given() -> None:
    environ = {
        "AIP_MODEL_DIR": "gs://tf-out/base/model/",
        "AIP_CHECKPOINT_DIR": "gs://tf-out/base/checkpoints/",
        "AIP_TENSORBOARD_LOG_DIR": "gs://tf-out/base/logs/",
    }
    assert output_args(["--config", "c.json"], environ) == [
        *("--config", "c.json"),
        *("--output-dir", "/gcs/tf-out/base/model"),
        *("--checkpoint-dir", "/gcs/tf-out/base/checkpoints"),
    ]
    given = ["--output-dir=/tmp/o", "--checkpoint-dir", "/tmp/c"]
    assert output_args(given, environ) == given
    assert output_args([], {"AIP_MODEL_DIR": " "}) == []
    assert output_args([], {"AIP_MODEL_DIR": "gs://b/m", cluster.FUSE_ROOT_ENV: "/x"}) == [
        *("--output-dir", "/x/b/m")
    ]


# ---- processes --------------------------------------------------------------------------


def test_nproc_per_node() -> None:
    assert resolve_nproc("auto", _no_gpu) == 1
    assert resolve_nproc("auto", _gpus(8)) == 8
    assert resolve_nproc("2", _never) == 2
    for bad in ("0", "-1", "two", ""):
        with pytest.raises(TrainerError, match="--nproc-per-node"):
            resolve_nproc(bad, _never)


def test_one_node_one_process_runs_in_process() -> None:
    environ = {
        "AIP_MODEL_DIR": "gs://b/j/model/",
        "CLUSTER_SPEC": _spec("workerpool0", workerpool1=[]),
    }
    launch = plan_launch(["--nproc-per-node", "auto", "--", "--config", "c.json"], environ, _no_gpu)
    assert launch == Launch(
        in_process=True, argv=["--config", "c.json", "--output-dir", "/gcs/b/j/model"]
    )


def test_outside_vertex_several_gpus_run_torchrun_standalone() -> None:
    launch = plan_launch(["--", "--config", "c.json"], {}, _gpus(4))
    assert launch.argv == [
        *(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1"),
        *("--nproc-per-node", "4", "-m", "tunefleet_trainer", "--config", "c.json"),
    ]
    assert not launch.in_process


def test_a_worker_replica_runs_torchrun_with_a_static_rendezvous_at_the_chief() -> None:
    environ = {
        "CLUSTER_SPEC": _spec("workerpool1", 1, workerpool2=REDUCERS),
        "AIP_MODEL_DIR": "gs://b/j/model/",
        "AIP_CHECKPOINT_DIR": "gs://b/j/checkpoints/",
    }
    launch = plan_launch(["--nproc-per-node", "8", "--", "--config", "c.json"], environ, _never)
    assert launch == Launch(
        in_process=False,
        argv=[
            *(sys.executable, "-m", "torch.distributed.run"),
            *("--nnodes", "3", "--node-rank", "2"),
            *("--master-addr", "cmle-training-workerpool0-1a2b3c-0", "--master-port", "2222"),
            *("--nproc-per-node", "8", "-m", "tunefleet_trainer", "--config", "c.json"),
            *("--output-dir", "/gcs/b/j/model", "--checkpoint-dir", "/gcs/b/j/checkpoints"),
        ],
    )


def test_several_nodes_with_one_process_each_still_run_torchrun() -> None:
    launch = plan_launch(
        ["--nproc-per-node", "1", "--"], {"CLUSTER_SPEC": _spec("workerpool0")}, _never
    )
    assert not launch.in_process
    assert launch.argv[launch.argv.index("--nnodes") + 1] == "3"


def test_without_a_separator_unknown_options_are_the_trainers() -> None:
    launch = plan_launch(["--config", "c.json", "--nproc-per-node", "2"], {}, _never)
    assert launch.argv[-3:] == ["tunefleet_trainer", "--config", "c.json"]
    assert launch.argv[launch.argv.index("--nproc-per-node") + 1] == "2"


def test_torchrun_needs_the_chief_for_several_nodes() -> None:
    with pytest.raises(TrainerError, match="chief"):
        torchrun_argv(Topology(2, 1, None, None), 1, [])


# ---- main -------------------------------------------------------------------------------


def test_main_refuses_a_non_gcs_output_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CLUSTER_SPEC", raising=False)
    monkeypatch.setenv("AIP_MODEL_DIR", "s3://elsewhere/model/")
    assert cluster.main(["--nproc-per-node", "1", "--", "--config", "c.json"]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == "tunefleet-cluster: error: AIP_MODEL_DIR must be a gs:// URI, got 's3://elsewhere/model/'\n"
    )


def test_main_execs_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(cluster.os, "execv", lambda path, argv: calls.append((path, list(argv))))
    monkeypatch.setenv("CLUSTER_SPEC", _spec("workerpool1", 0))
    monkeypatch.delenv("AIP_MODEL_DIR", raising=False)
    monkeypatch.delenv("AIP_CHECKPOINT_DIR", raising=False)
    cluster.main(["--nproc-per-node", "2", "--", "--config", "c.json"])
    ((path, argv),) = calls
    assert path == sys.executable == argv[0]
    assert argv[argv.index("--node-rank") + 1] == "1"


def test_main_hands_the_trainer_its_arguments_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    import tunefleet_trainer.__main__ as trainer

    seen: list[list[str]] = []
    monkeypatch.setattr(trainer, "main", lambda argv: seen.append(list(argv)) or 0)
    monkeypatch.setenv("CLUSTER_SPEC", _spec("workerpool0", workerpool1=[]))
    monkeypatch.setenv("AIP_MODEL_DIR", "gs://b/j/model/")
    monkeypatch.delenv("AIP_CHECKPOINT_DIR", raising=False)
    assert cluster.main(["--nproc-per-node", "1", "--", "--config", "c.json"]) == 0
    assert seen == [["--config", "c.json", "--output-dir", "/gcs/b/j/model"]]


def test_the_module_runs_the_trainer_which_reports_its_own_error(tmp_path: Path) -> None:
    """``python -m tunefleet_trainer.cluster``, single node, in process: the trainer's exit 2
    for a missing config comes back (quick: the trainer checks its config before torch)."""
    done = subprocess.run(
        [
            *(sys.executable, "-m", "tunefleet_trainer.cluster", "--nproc-per-node", "1"),
            *("--", "--config", str(tmp_path / "missing.json")),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "AIP_MODEL_DIR": "gs://b/j/model/"},
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("tunefleet-train: error:"), done.stderr
    assert "missing.json" in done.stderr


@pytest.mark.slow
def test_a_single_replica_job_trains_into_the_fuse_paths(
    tmp_path: Path, quickstart_train: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end in this process: a one-replica CLUSTER_SPEC and AIP_* URIs; the model and
    the checkpoints land under the (temporary) FUSE root."""
    config = tmp_path / "trainer.json"
    config.write_text(
        json.dumps(
            {
                "base_model": "scratch:tiny",
                "adapter": "full",
                "train": str(quickstart_train),
                "device": "cpu",
                "hyperparameters": {
                    "epochs": 1,
                    "batch_size": 16,
                    "learning_rate": 0.003,
                    "seed": 11,
                    "max_seq_length": 64,
                },
            }
        )
    )
    fuse = tmp_path / "gcs"
    monkeypatch.setenv(cluster.FUSE_ROOT_ENV, str(fuse))
    monkeypatch.setenv("CLUSTER_SPEC", _spec("workerpool0", workerpool1=[]))
    monkeypatch.setenv("AIP_MODEL_DIR", "gs://tf-out/jobs/1/model/")
    monkeypatch.setenv("AIP_CHECKPOINT_DIR", "gs://tf-out/jobs/1/checkpoints/")
    assert cluster.main(["--nproc-per-node", "1", "--", "--config", str(config)]) == 0
    manifest = json.loads((fuse / "tf-out/jobs/1/model/manifest.json").read_text())
    assert manifest["adapter"] == "full"
    assert any((fuse / "tf-out/jobs/1/checkpoints").glob("checkpoint-*"))
