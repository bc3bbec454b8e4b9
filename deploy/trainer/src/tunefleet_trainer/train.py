"""One training run: data, base model, TRL trainer, checkpoints, outputs and manifest.

Supervised runs use TRL's ``SFTTrainer`` on the examples :mod:`tunefleet_trainer.chat`
tokenized (so the loss mask is ours and the same for every template); DPO runs use TRL's
``DPOTrainer``. Both are Hugging Face Trainers, so gradient accumulation, schedules,
clipping, seeding, checkpoint resume and torch distributed (``torchrun``/``accelerate
launch``) are the library's, not ours.

Outputs in ``output_dir``::

    adapter/          LoRA / QLoRA adapter and the tokenizer     (adapter lora, qlora)
    model/            the fine-tuned model and the tokenizer     (adapter full)
    merged/           base with the adapter merged in            (merge: true)
    base/             the initial weights of a scratch: base      (adapter lora, qlora)
    manifest.json     what was trained, from what, how, the final metrics; written last

With ``evaluation`` set, the golden set is read (and refused, with its file and line) before
anything else, and answered greedily through :class:`~tunefleet_trainer.inference.ChatModel`:
by the base model before training starts (``baseline_predictions.jsonl``, kept in the
checkpoint directory so a resumed run does not answer again) and by the trained model once
its outputs are written (``predictions.jsonl``). Both go to ``evaluation.predictions_dir``
(default output_dir) and are listed in the manifest; each answer prints a progress line
(:func:`~tunefleet_trainer.predictions.format_progress_line`). Under torch distributed the
main process answers alone.

Checkpoints go to the checkpoint directory: one per epoch, one every ``save_steps`` and one
whenever ``checkpoint_minutes`` have passed. A run started again with the same checkpoint
directory resumes from the newest complete checkpoint (model, optimizer, schedule, data
order and random state), so it ends with the weights an uninterrupted run would have.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from tunefleet_trainer.chat import (
    ChatEncoder,
    dataset_texts,
    preference_rows,
    read_examples,
)
from tunefleet_trainer.config import DEFAULT_EPOCHS, EvaluationConfig, TrainerConfig, dataset_file
from tunefleet_trainer.errors import TrainerError
from tunefleet_trainer.inference import ChatModel, answer_golden, pick_device
from tunefleet_trainer.metrics import format_checkpoint_line, format_metric_line
from tunefleet_trainer.models import load_base, load_pretrained
from tunefleet_trainer.predictions import (
    BASELINE_PREDICTIONS_NAME,
    PREDICTIONS_NAME,
    GoldenExample,
    golden_examples,
    read_predictions,
    write_predictions,
)

__all__ = ["MANIFEST_NAME", "newest_checkpoint", "train"]

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
DEFAULT_BATCH_SIZE = 8
MAX_MICRO_BATCH = 8
"""Examples per device per forward pass; the rest of a batch comes from accumulation."""
DEFAULT_MAX_LENGTH = 2048
DEFAULT_LEARNING_RATE = {"full": 2e-5, "lora": 2e-4, "qlora": 2e-4}
FAILPOINT_AFTER_CHECKPOINT = "trainer-after-checkpoint"


def _freeze_if_asked(name: str) -> None:
    """Let a test kill the trainer at an exact point: with ``name`` listed in
    $TUNEFLEET_FAILPOINTS, announce it in $TUNEFLEET_FAILPOINT_DIR and wait to be killed.
    (The trainer imports nothing of tunefleet's core, whose engine has its own.)"""
    if name not in os.environ.get("TUNEFLEET_FAILPOINTS", "").split(","):
        return
    Path(os.environ.get("TUNEFLEET_FAILPOINT_DIR", "."), name).touch()
    while True:
        time.sleep(3600)


Log = Callable[[str], None]


def _print(line: str) -> None:
    print(line, flush=True)


def newest_checkpoint(directory: Path) -> Path | None:
    """The newest complete checkpoint in ``directory`` (one whose trainer state was written)."""
    if not directory.is_dir():
        return None
    complete = [
        path
        for path in directory.glob("checkpoint-*")
        if path.name.removeprefix("checkpoint-").isdigit()
        and (path / "trainer_state.json").is_file()
    ]
    return max(complete, key=lambda p: int(p.name.removeprefix("checkpoint-")), default=None)


def _quiet_libraries() -> None:
    """No progress bars: a launcher's log is a file, and each bar update would be a line."""
    import datasets
    import huggingface_hub
    import transformers

    datasets.disable_progress_bars()
    huggingface_hub.utils.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()


def _micro_batch(batch_size: int, world_size: int) -> tuple[int, int]:
    """Per-device batch and accumulation steps that make exactly ``batch_size`` per step."""
    per_process = max(1, batch_size // world_size)
    micro = max(d for d in range(1, MAX_MICRO_BATCH + 1) if per_process % d == 0)
    return micro, per_process // micro


class _Reporter:
    """Trainer callback: metric and checkpoint lines, and time-based checkpoints."""

    def __init__(self, config: TrainerConfig, log: Log) -> None:
        from transformers import TrainerCallback

        reporter = self

        class Callback(TrainerCallback):
            def on_log(
                self, args: Any, state: Any, control: Any, logs: Any = None, **_: Any
            ) -> None:
                if state.is_world_process_zero and logs:
                    reporter.log_metrics(state, logs)

            def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
                if time.monotonic() - reporter.last_save > config.checkpoint_minutes * 60:
                    control.should_save = True

            def on_epoch_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
                control.should_save = True

            def on_save(self, args: Any, state: Any, control: Any, **_: Any) -> None:
                reporter.last_save = time.monotonic()
                if state.is_world_process_zero:
                    path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                    log(format_checkpoint_line(step=state.global_step, path=str(path)))
                    _freeze_if_asked(FAILPOINT_AFTER_CHECKPOINT)

        self.callback = Callback()
        self.last_save = time.monotonic()
        self.log = log
        self.final: dict[str, float] = {}

    def log_metrics(self, state: Any, logs: dict[str, Any]) -> None:
        if "train_runtime" in logs:  # the end-of-training summary, not a step
            self.log(f"training finished in {logs['train_runtime']:.1f}s")
            return
        values: dict[str, float | int | None] = {
            "total_steps": state.max_steps,
            "epoch": logs.get("epoch", state.epoch),
            "train_loss": logs.get("loss"),
            "valid_loss": logs.get("eval_loss"),
            "train_token_accuracy": logs.get("mean_token_accuracy"),
            "valid_token_accuracy": logs.get("eval_mean_token_accuracy"),
            "learning_rate": logs.get("learning_rate"),
        }
        for key in ("train_loss", "valid_loss", "train_token_accuracy", "valid_token_accuracy"):
            if values[key] is not None:
                self.final[key] = float(values[key])
        self.log(format_metric_line(step=state.global_step, **values))


def _hyper(config: TrainerConfig) -> dict[str, Any]:
    """The hyperparameters with tunefleet's defaults filled in."""
    hp = config.hyperparameters
    return {
        "epochs": hp.epochs or DEFAULT_EPOCHS,
        "batch_size": hp.batch_size or DEFAULT_BATCH_SIZE,
        "learning_rate": hp.learning_rate or DEFAULT_LEARNING_RATE[config.adapter],
        "warmup_ratio": hp.warmup_ratio or 0.0,
        "scheduler": hp.scheduler or "linear",
        "max_grad_norm": hp.max_grad_norm or 1.0,
        "seed": 42 if hp.seed is None else hp.seed,
    }


def _training_arguments(
    config: TrainerConfig, device: str, has_validation: bool, max_length: int
) -> dict[str, Any]:
    hyper = _hyper(config)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    micro, accumulation = _micro_batch(hyper["batch_size"], world_size)
    evaluation: dict[str, Any] = {"eval_strategy": "no"}
    if has_validation:
        evaluation = {
            "eval_strategy": "steps" if config.eval_steps else "epoch",
            "eval_steps": config.eval_steps,
            "per_device_eval_batch_size": micro,
        }
    import torch

    return {
        "output_dir": str(config.checkpoints.resolve()),
        "per_device_train_batch_size": micro,
        "gradient_accumulation_steps": accumulation,
        "num_train_epochs": hyper["epochs"],
        "learning_rate": hyper["learning_rate"],
        "lr_scheduler_type": hyper["scheduler"],
        "warmup_steps": hyper["warmup_ratio"],
        "max_grad_norm": hyper["max_grad_norm"],
        "seed": hyper["seed"],
        "data_seed": hyper["seed"],
        "logging_strategy": "steps",
        "logging_steps": config.logging_steps,
        "save_strategy": "steps" if config.save_steps else "epoch",
        "save_steps": config.save_steps or 500,
        "save_total_limit": config.save_total_limit,
        "report_to": "none",
        "disable_tqdm": True,
        "use_cpu": device == "cpu",
        "bf16": device.startswith("cuda") and torch.cuda.is_bf16_supported(),
        "max_length": max_length,
        "dataloader_num_workers": 0,
        **evaluation,
    }


def _lora_config(config: TrainerConfig) -> Any:
    from peft import LoraConfig

    lora = config.hyperparameters.lora
    return LoraConfig(
        r=lora.rank if lora else 16,
        lora_alpha=lora.alpha if lora else 32,
        lora_dropout=lora.dropout if lora else 0.05,
        target_modules=lora.target_modules if lora and lora.target_modules else None,
        task_type="CAUSAL_LM",
    )


def _max_length(config: TrainerConfig, model: Any) -> int:
    limit = getattr(model.config, "max_position_embeddings", None) or DEFAULT_MAX_LENGTH
    wanted = config.hyperparameters.max_seq_length or DEFAULT_MAX_LENGTH
    return int(min(wanted, limit))


def train(config: TrainerConfig, *, log: Log = _print) -> dict[str, Any]:
    """Run the training ``config`` describes; return the manifest it wrote.

    Raises TrainerError for what the user must change; anything else is a bug or the
    machine's (out of memory, a dead disk) and keeps its traceback.
    """
    started = datetime.now(UTC)
    train_path = dataset_file(config.train, "train")
    valid_path = dataset_file(config.validation, "validation") if config.validation else None
    data_format, train_examples = read_examples(train_path, "train")
    valid_examples: list[dict[str, Any]] = []
    if valid_path is not None:
        valid_format, valid_examples = read_examples(valid_path, "validation")
        if valid_format != data_format:
            raise TrainerError(f"{valid_path}: {valid_format} examples, but train is {data_format}")
    expected = "preference" if config.method == "dpo" else "chat"
    if data_format != expected:
        raise TrainerError(
            f"{train_path}: method {config.method} needs {expected} examples, "
            f"the file holds {data_format} examples"
        )
    # Before any model is loaded: a broken golden set must not cost a training run.
    golden = _read_golden(config.evaluation) if config.evaluation else None

    _quiet_libraries()
    device = pick_device(config.device)
    hyper = _hyper(config)
    checkpoints = config.checkpoints.resolve()
    checkpoints.mkdir(parents=True, exist_ok=True)
    output = Path(config.output_dir).resolve()
    output.mkdir(parents=True, exist_ok=True)
    log(f"device {device}; loading base model {config.base_model}")
    base = load_base(
        config.base_model,
        adapter=config.adapter,
        device=device,
        seed=hyper["seed"],
        texts=dataset_texts([*train_examples, *valid_examples]),
        scratch_dir=checkpoints / "scratch-base",
    )
    tokenizer = base.tokenizer
    max_length = _max_length(config, base.model)
    arguments = _training_arguments(config, device, bool(valid_examples), max_length)
    peft_config = None if config.adapter == "full" else _lora_config(config)
    reporter = _Reporter(config, log)

    from datasets import Dataset

    if config.method == "supervised":
        from trl import SFTConfig, SFTTrainer

        encoder = ChatEncoder(tokenizer, max_length)
        train_rows = _encoded_rows(encoder, train_examples, train_path, log)
        valid_rows = _encoded_rows(encoder, valid_examples, valid_path, log)
        trainer: Any = SFTTrainer(
            model=base.model,
            args=SFTConfig(**arguments, dataset_num_proc=None),
            train_dataset=Dataset.from_list(train_rows),
            eval_dataset=Dataset.from_list(valid_rows) if valid_rows else None,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[reporter.callback],
        )
    else:
        from trl import DPOConfig, DPOTrainer

        dpo_arguments = dict(arguments)
        if config.beta is not None:
            dpo_arguments["beta"] = config.beta
        trainer = DPOTrainer(
            model=base.model,
            args=DPOConfig(**dpo_arguments),
            train_dataset=Dataset.from_list(preference_rows(train_examples)),
            eval_dataset=Dataset.from_list(preference_rows(valid_examples))
            if valid_examples
            else None,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[reporter.callback],
        )

    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # our metric lines replace its dict dumps
    if golden is not None and golden.config.baseline and trainer.is_world_process_zero():
        _answer_baseline(trainer, tokenizer, golden, checkpoints / BASELINE_PREDICTIONS_NAME, log)
    resume = newest_checkpoint(checkpoints)
    if resume is not None:
        log(f"resuming from {resume}")
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    if not trainer.is_world_process_zero():
        return {}
    return _write_outputs(config, trainer, base, output, reporter, started, hyper, golden, log)


def _encoded_rows(
    encoder: ChatEncoder, examples: list[dict[str, Any]], path: Path | None, log: Log
) -> list[dict[str, list[int]]]:
    rows = []
    empty = 0
    for example in examples:
        encoded = encoder.encode(example)
        if encoded.trained_tokens == 0:
            empty += 1
            continue
        rows.append({"input_ids": encoded.input_ids, "labels": encoded.labels})
    if empty:
        log(
            f"{path}: {empty} example(s) left out: no assistant tokens to train on within the length limit"
        )
    if examples and not rows:
        raise TrainerError(f"{path}: no example has an assistant turn to train on")
    return rows


@dataclass(frozen=True)
class _Golden:
    """The golden set as read up front: its settings, file, examples and digest."""

    config: EvaluationConfig
    path: Path
    examples: list[GoldenExample]
    sha256: str


def _read_golden(evaluation: EvaluationConfig) -> _Golden:
    """The golden set's selected examples; TrainerError with file:line when it is malformed."""
    path = dataset_file(evaluation.golden_set, "golden")
    examples = golden_examples(path, evaluation.max_examples)
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return _Golden(evaluation, path, examples, digest.hexdigest())


def _has_answers(path: Path, count: int) -> bool:
    """Whether ``path`` is a predictions file answering exactly examples 0 .. count-1."""
    try:
        predictions = read_predictions(path.read_bytes(), source=str(path))
    except (OSError, TrainerError):
        return False
    return sorted(p.index for p in predictions) == list(range(count))


def _answer_baseline(trainer: Any, tokenizer: Any, golden: _Golden, path: Path, log: Log) -> None:
    """The base model's answers, written to ``path`` in the checkpoint directory, unless an
    earlier attempt of this run wrote them already: a resumed run does not pay for them
    twice. (Answering again would be correct too, since the checkpoint is loaded only when
    training starts.)"""
    if _has_answers(path, len(golden.examples)):
        log(f"baseline answers already in {path}")
        return
    # The trainer's model, before train(): on its training device, and for an adapter with
    # the freshly initialised (zero) update, so its answers are exactly the base model's.
    # Greedy decoding draws no random numbers: training goes on exactly as without it.
    model = ChatModel(trainer.model, tokenizer, "baseline")
    predictions = answer_golden(
        model, golden.examples, golden.config.generation, label="baseline", log=log
    )
    write_predictions(path, predictions)


def _write_predictions(
    trainer: Any, tokenizer: Any, golden: _Golden, config: TrainerConfig, output: Path, log: Log
) -> dict[str, Any]:
    """Answer the golden set with the trained model, put the answers (and the baseline's)
    in the predictions directory, and return the manifest's ``predictions`` entry."""
    target = Path(golden.config.predictions_dir or output).resolve()
    target.mkdir(parents=True, exist_ok=True)
    model = ChatModel(trainer.model, tokenizer, "trained")
    predictions = answer_golden(
        model, golden.examples, golden.config.generation, label="trained", log=log
    )
    write_predictions(target / PREDICTIONS_NAME, predictions)
    files = {"predictions": target / PREDICTIONS_NAME}
    baseline = config.checkpoints.resolve() / BASELINE_PREDICTIONS_NAME
    if golden.config.baseline and baseline.is_file():
        partial = target / f".{BASELINE_PREDICTIONS_NAME}.partial"
        shutil.copyfile(baseline, partial)
        partial.replace(target / BASELINE_PREDICTIONS_NAME)
        files["baseline_predictions"] = target / BASELINE_PREDICTIONS_NAME
    log(f"wrote {len(predictions)} answers to {target / PREDICTIONS_NAME}")
    return {
        # Relative to the output directory when inside it, so the output can be moved.
        "files": {
            kind: str(path.relative_to(output)) if path.is_relative_to(output) else str(path)
            for kind, path in files.items()
        },
        "examples": len(predictions),
        "golden_sha256": golden.sha256,
        "generation": golden.config.generation.model_dump(mode="json"),
    }


def _write_outputs(
    config: TrainerConfig,
    trainer: Any,
    base: Any,
    output: Path,
    reporter: _Reporter,
    started: datetime,
    hyper: dict[str, Any],
    golden: _Golden | None,
    log: Log,
) -> dict[str, Any]:
    """Write the model artifacts, then the predictions, then the manifest: a manifest
    means the run's outputs are complete."""
    tokenizer = base.tokenizer
    model = trainer.model
    artifacts: dict[str, str] = {}
    if config.adapter == "full":
        _save(output / "model", lambda d: (model.save_pretrained(d), tokenizer.save_pretrained(d)))
        artifacts["model"] = "model"
    else:
        _save(
            output / "adapter", lambda d: (model.save_pretrained(d), tokenizer.save_pretrained(d))
        )
        artifacts["adapter"] = "adapter"
        if base.scratch_dir is not None:
            _save(output / "base", lambda d: shutil.copytree(base.scratch_dir, d))
            artifacts["base"] = "base"
        if config.merge:
            _save(output / "merged", lambda d: _merge(config, base, output / "adapter", d))
            artifacts["merged"] = "merged"
    first = next(iter(artifacts.values()))
    log(f"wrote {output / first}")
    predictions = None
    if golden is not None:
        predictions = _write_predictions(trainer, tokenizer, golden, config, output, log)
    manifest: dict[str, Any] = {
        "format_version": MANIFEST_VERSION,
        "base_model": config.base_model,
        "method": config.method,
        "adapter": config.adapter,
        "artifacts": artifacts,
        "hyperparameters": {
            **config.hyperparameters.model_dump(mode="json", exclude_none=True),
            **hyper,
        },
        "steps": trainer.state.global_step,
        "epochs": trainer.state.epoch,
        "metrics": {k: (v if math.isfinite(v) else str(v)) for k, v in reporter.final.items()},
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "versions": {
            "python": platform.python_version(),
            **{
                name: version(name)
                for name in ("tunefleet", "torch", "transformers", "peft", "trl")
            },
        },
    }
    if predictions is not None:
        manifest["predictions"] = predictions
    partial = output / f".{MANIFEST_NAME}.partial"
    partial.write_text(json.dumps(manifest, indent=2) + "\n")
    partial.replace(output / MANIFEST_NAME)
    log(f"wrote {output / MANIFEST_NAME}")
    return manifest


def _save(directory: Path, write: Callable[[Path], object]) -> None:
    """Write a directory under a temporary name and rename it: never half a model."""
    partial = directory.with_name(f".{directory.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    write(partial)
    if directory.exists():
        shutil.rmtree(directory)
    partial.replace(directory)


def _merge(config: TrainerConfig, base: Any, adapter_dir: Path, directory: Path) -> None:
    """The base model (unquantised, for QLoRA) with the adapter merged into its weights."""
    from peft import PeftModel

    model, tokenizer = load_pretrained(base.source, adapter="lora", device="cpu")
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
