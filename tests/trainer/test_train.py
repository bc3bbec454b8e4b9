"""The trainer end to end on a scratch model: full and LoRA, DPO, resume, real loading."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tunefleet_trainer.config import TrainerConfig
from tunefleet_trainer.errors import TrainerError
from tunefleet_trainer.metrics import read_metric_line
from tunefleet_trainer.train import newest_checkpoint, train

from .conftest import write_jsonl

FAST = {"epochs": 3, "batch_size": 8, "learning_rate": 0.003, "seed": 11, "max_seq_length": 128}


def _config(tmp_path: Path, train_file: Path, **fields: Any) -> TrainerConfig:
    values: dict[str, Any] = {
        "base_model": "scratch:tiny",
        "adapter": "full",
        "hyperparameters": FAST,
        "train": str(train_file),
        "output_dir": str(tmp_path / "out"),
        "device": "cpu",
        **fields,
    }
    return TrainerConfig.model_validate(values)


def _losses(lines: list[str]) -> list[float]:
    metrics = [read_metric_line(line) for line in lines]
    return [m["train_loss"] for m in metrics if m is not None and m.get("train_loss") is not None]


def test_full_fine_tuning_lowers_the_loss_and_writes_a_loadable_model(
    tmp_path: Path, quickstart_train: Path, quickstart_validation: Path
) -> None:
    lines: list[str] = []
    config = _config(tmp_path, quickstart_train, validation=str(quickstart_validation))
    manifest = train(config, log=lines.append)
    losses = _losses(lines)
    assert len(losses) == manifest["steps"] == 18  # 48 examples / 8 per step x 3 epochs
    assert losses[-1] < losses[0] * 0.8, f"the loss did not fall: {losses}"
    assert any('"valid_loss"' in line for line in lines), "validation loss is reported"
    out = tmp_path / "out"
    assert manifest["artifacts"] == {"model": "model"}
    assert json.loads((out / "manifest.json").read_text())["adapter"] == "full"
    assert (out / "model" / "model.safetensors").is_file()
    assert (out / "model" / "tokenizer.json").is_file()
    from tunefleet_trainer.inference import load_trained

    answer = load_trained(out).complete(
        [{"role": "user", "content": "How do I reset my password?"}], max_tokens=16, temperature=0
    )
    assert answer.completion_tokens > 0 and answer.prompt_tokens > 0


def test_lora_trains_an_adapter_and_keeps_the_base(tmp_path: Path, quickstart_train: Path) -> None:
    lines: list[str] = []
    config = _config(
        tmp_path,
        quickstart_train,
        adapter="lora",
        merge=True,
        hyperparameters={**FAST, "lora": {"rank": 4, "alpha": 8, "dropout": 0.0}},
    )
    manifest = train(config, log=lines.append)
    out = tmp_path / "out"
    assert manifest["artifacts"] == {"adapter": "adapter", "base": "base", "merged": "merged"}
    adapter_config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["r"] == 4 and adapter_config["lora_alpha"] == 8
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    losses = _losses(lines)
    assert losses[-1] < losses[0], f"the loss did not fall: {losses}"
    from safetensors.torch import load_file

    base = load_file(out / "base" / "model.safetensors")
    merged = load_file(out / "merged" / "model.safetensors")
    changed = [k for k in base if k in merged and not (base[k] == merged[k]).all()]
    assert changed and all("proj" in k for k in changed), "only the adapted projections change"
    from tunefleet_trainer.inference import load_trained

    reply = load_trained(out).complete(
        [{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0
    )
    assert reply.completion_tokens > 0


def test_dpo_trains_on_preference_pairs(tmp_path: Path) -> None:
    pairs = [
        {
            "input": {"messages": [{"role": "user", "content": f"Order {n} is late. What now?"}]},
            "preferred_output": [
                {"role": "assistant", "content": "Sorry! I have asked the carrier to check it."}
            ],
            "non_preferred_output": [{"role": "assistant", "content": "Not my problem."}],
        }
        for n in range(16)
    ]
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    lines: list[str] = []
    config = _config(
        tmp_path,
        data,
        method="dpo",
        adapter="lora",
        beta=0.1,
        hyperparameters={**FAST, "epochs": 2, "learning_rate": 0.01},
    )
    manifest = train(config, log=lines.append)
    assert manifest["method"] == "dpo" and manifest["steps"] == 4
    assert (tmp_path / "out" / "adapter" / "adapter_model.safetensors").is_file()
    losses = _losses(lines)
    assert losses[-1] < losses[0], f"the DPO loss did not fall: {losses}"


def test_a_supervised_run_refuses_preference_data(tmp_path: Path) -> None:
    pair = {
        "input": {"messages": [{"role": "user", "content": "Hi"}]},
        "preferred_output": [{"role": "assistant", "content": "Hello!"}],
        "non_preferred_output": [{"role": "assistant", "content": "What?"}],
    }
    data = write_jsonl(tmp_path / "pairs.jsonl", [pair])
    with pytest.raises(TrainerError, match="method supervised needs chat examples"):
        train(_config(tmp_path, data))


def test_qlora_without_a_gpu_is_a_clear_error(tmp_path: Path, quickstart_train: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tunefleet_trainer",
            "--train",
            str(quickstart_train),
            "--output-dir",
            str(tmp_path / "out"),
            "--base-model",
            "scratch:tiny",
            "--device",
            "cpu",
        ],
        env={**os.environ, "TUNEFLEET_TRAINER_CONFIG": json.dumps({"adapter": "qlora"})},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "tunefleet-train: error: adapter qlora trains a 4-bit model and needs a CUDA GPU; none "
        "is available here (device cpu). Use adapter lora, or run on a GPU target"
    ]


def test_a_model_directory_loads_through_the_real_path(
    tmp_path: Path, quickstart_train: Path
) -> None:
    """A directory written by save_pretrained (as a downloaded model is) trains with LoRA."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunefleet_trainer.chat import dataset_texts, read_examples
    from tunefleet_trainer.models import build_scratch_base

    model_dir = tmp_path / "my-model"
    _, examples = read_examples(quickstart_train, "train")
    build_scratch_base("tiny", dataset_texts(examples), 3, model_dir)
    # Round-trip through from_pretrained/save_pretrained, as a hub snapshot would be written.
    AutoModelForCausalLM.from_pretrained(model_dir).save_pretrained(tmp_path / "snapshot")
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(tmp_path / "snapshot")
    manifest = train(
        _config(tmp_path, quickstart_train, base_model=str(tmp_path / "snapshot"), adapter="lora"),
        log=lambda line: None,
    )
    assert manifest["base_model"] == str(tmp_path / "snapshot")
    assert "base" not in manifest["artifacts"], "a real base is referenced, not copied"


def test_a_hub_id_missing_offline_says_what_to_do(
    tmp_path: Path, quickstart_train: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    # huggingface_hub reads the variable once, at import: once an earlier test has imported
    # it, only its constant says offline (else the loader retries the network for a minute).
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(
        TrainerError, match=r"base model example-org/no-such-model: cannot be loaded"
    ):
        train(
            _config(
                tmp_path, quickstart_train, base_model="example-org/no-such-model", adapter="lora"
            )
        )


def _run_trainer(config: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tunefleet_trainer", "--config", str(config)],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_resuming_from_a_checkpoint_ends_with_the_uninterrupted_weights(
    tmp_path: Path, quickstart_train: Path
) -> None:
    from safetensors.torch import load_file

    def config_file(name: str) -> Path:
        path = tmp_path / f"{name}.json"
        config = _config(
            tmp_path,
            quickstart_train,
            output_dir=str(tmp_path / name),
            save_steps=4,
            adapter="lora",  # LoRA dropout draws random numbers: the RNG state must resume too
            hyperparameters={**FAST, "lora": {"rank": 4, "dropout": 0.1}},
        )
        path.write_text(config.model_dump_json())
        return path

    straight = _run_trainer(config_file("straight"))
    output, _ = straight.communicate(timeout=300)
    assert straight.returncode == 0, output

    failpoints = tmp_path / "failpoints"
    failpoints.mkdir()
    interrupted = _run_trainer(
        config_file("resumed"),
        {
            "TUNEFLEET_FAILPOINTS": "trainer-after-checkpoint",
            "TUNEFLEET_FAILPOINT_DIR": str(failpoints),
        },
    )
    deadline = time.monotonic() + 300
    while not (failpoints / "trainer-after-checkpoint").exists():
        assert interrupted.poll() is None, interrupted.communicate()[0]
        assert time.monotonic() < deadline, "the trainer never reached its first checkpoint"
        time.sleep(0.1)
    interrupted.kill()  # a spot interruption, right after the first checkpoint
    interrupted.communicate()
    checkpoints = tmp_path / "resumed" / "checkpoints"
    assert newest_checkpoint(checkpoints) == checkpoints / "checkpoint-4"
    assert not (tmp_path / "resumed" / "manifest.json").exists()

    resumed = _run_trainer(config_file("resumed"))
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    assert f"resuming from {checkpoints / 'checkpoint-4'}" in output
    steps = [
        json.loads(line.split(" ", 1)[1])["step"]
        for line in output.splitlines()
        if line.startswith("tunefleet.metric ")
    ]
    assert steps[0] == 5, "the resumed run starts after the checkpoint's step"

    expected = load_file(tmp_path / "straight" / "adapter" / "adapter_model.safetensors")
    actual = load_file(tmp_path / "resumed" / "adapter" / "adapter_model.safetensors")
    assert expected.keys() == actual.keys()
    for key in expected:
        assert (expected[key] == actual[key]).all(), f"{key} differs after resuming"


def test_a_scratch_base_built_twice_into_one_folder_keeps_the_first(
    tmp_path: Path, quickstart_train: Path
) -> None:
    """Every process of a multi-node job builds the scratch base into the shared checkpoint
    folder; the one that loses the race uses the winner's, and leaves nothing behind."""
    from tunefleet_trainer.chat import dataset_texts, read_examples
    from tunefleet_trainer.models import build_scratch_base

    _, examples = read_examples(quickstart_train, "train")
    base = tmp_path / "checkpoints" / "scratch-base"
    build_scratch_base("tiny", dataset_texts(examples), 0, base)
    first = (base / "model.safetensors").read_bytes()
    build_scratch_base("tiny", dataset_texts(examples), 0, base)
    assert (base / "model.safetensors").read_bytes() == first
    assert sorted(p.name for p in base.parent.iterdir()) == ["scratch-base"]
