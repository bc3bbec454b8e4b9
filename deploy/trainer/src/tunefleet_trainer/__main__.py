"""``python -m tunefleet_trainer`` (also ``tunefleet-train``): the trainer's entry point.

It is what every launcher runs: the local provider's subprocess, the container image of
``deploy/trainer`` on SageMaker, HyperPod, Azure ML and Vertex, and ``torchrun`` for more
than one GPU. Each launcher passes the config and the paths explicitly (the provider that
launches it knows them); see :mod:`tunefleet_trainer.config`.

Exit status: 0 trained, 2 the config cannot run (the reason on one line), 1 anything else
(with its traceback, since it is a bug or the machine's fault).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from tunefleet_trainer.errors import TrainerError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tunefleet-train",
        description="Fine-tune a model as a TrainerConfig describes (tunefleet's portable trainer).",
    )
    parser.add_argument("--config", help="TrainerConfig JSON file (else $TUNEFLEET_TRAINER_CONFIG)")
    parser.add_argument(
        "--config-key", help="read the config from this key of --config's JSON object"
    )
    parser.add_argument("--train", help="training JSONL file or a directory holding one")
    parser.add_argument("--validation", help="validation JSONL file or a directory holding one")
    parser.add_argument("--output-dir", help="where the adapter or model and the manifest go")
    parser.add_argument("--checkpoint-dir", help="checkpoints; the run resumes from the newest")
    parser.add_argument("--base-model", help="hub id, local directory or scratch:<preset>")
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--merge", action="store_true", default=None, help="also write merged/")
    parser.add_argument("--golden-set", help="the evaluation's golden set (a JSONL file or a dir)")
    parser.add_argument("--predictions-dir", help="where the evaluation's answers go")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, train, and return the exit status."""
    args = _parser().parse_args(argv)
    device = args.device or ""
    if device.startswith("cuda:"):
        # One process, one GPU: pin it before torch initialises CUDA.
        os.environ["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]
        args.device = "cuda"
    from tunefleet_trainer.config import resolve_config

    try:
        config = resolve_config(
            args.config,
            {
                "train": args.train,
                "validation": args.validation,
                "output_dir": args.output_dir,
                "checkpoint_dir": args.checkpoint_dir,
                "base_model": args.base_model,
                "device": args.device,
                "merge": args.merge,
            },
            config_key=args.config_key,
            evaluation={"golden_set": args.golden_set, "predictions_dir": args.predictions_dir},
        )
        from tunefleet_trainer.train import train

        train(config)
    except TrainerError as exc:
        print(f"tunefleet-train: error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    return 0


def entry() -> None:
    """The ``tunefleet-train`` console script."""
    sys.exit(main())


if __name__ == "__main__":
    entry()
