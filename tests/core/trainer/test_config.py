"""Where the trainer finds its config and paths on each launcher."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunefleet.errors import TrainerError
from tunefleet.trainer.config import CONFIG_ENV, HYPERPARAMETER, resolve_config

CONFIG = {"base_model": "scratch:tiny", "method": "supervised", "adapter": "lora"}


def test_sagemaker_passes_the_config_as_a_hyperparameter_and_paths_as_environment(
    tmp_path: Path,
) -> None:
    (tmp_path / "hyperparameters.json").write_text(json.dumps({HYPERPARAMETER: json.dumps(CONFIG)}))
    environ = {
        "SM_INPUT_CONFIG_DIR": str(tmp_path),
        "SM_CHANNEL_TRAIN": "/opt/ml/input/data/train",
        "SM_CHANNEL_VALIDATION": "/opt/ml/input/data/validation",
        "SM_MODEL_DIR": "/opt/ml/model",
    }
    config = resolve_config(None, {}, environ)
    assert (config.base_model, config.train, config.validation, config.output_dir) == (
        "scratch:tiny",
        "/opt/ml/input/data/train",
        "/opt/ml/input/data/validation",
        "/opt/ml/model",
    )


def test_a_config_file_beats_the_environment_and_flags_beat_both(tmp_path: Path) -> None:
    config_file = tmp_path / "trainer.json"
    config_file.write_text(json.dumps({**CONFIG, "output_dir": "/from/file"}))
    environ = {
        CONFIG_ENV: json.dumps({**CONFIG, "base_model": "ignored"}),
        "SM_CHANNEL_TRAIN": "/data/train",
        "SM_MODEL_DIR": "/from/env",
    }
    config = resolve_config(str(config_file), {"logging_steps": 5, "merge": None}, environ)
    assert (config.output_dir, config.train, config.logging_steps, config.merge) == (
        "/from/file",
        "/data/train",
        5,
        False,
    )


def test_vertex_locations_are_read_through_the_fuse_mount() -> None:
    environ = {
        CONFIG_ENV: json.dumps(CONFIG),
        "AIP_MODEL_DIR": "gs://bucket/model",
        "AIP_TRAINING_DATA_URI": "gs://bucket/data/train.jsonl",
        "AIP_CHECKPOINT_DIR": "gs://bucket/checkpoints",
    }
    config = resolve_config(None, {}, environ)
    assert (config.train, config.output_dir, config.checkpoint_dir) == (
        "/gcs/bucket/data/train.jsonl",
        "/gcs/bucket/model",
        "/gcs/bucket/checkpoints",
    )


def test_a_broken_hyperparameters_file_names_itself(tmp_path: Path) -> None:
    (tmp_path / "hyperparameters.json").write_text("{not json")
    with pytest.raises(TrainerError, match=r"hyperparameters\.json: cannot be read as JSON"):
        resolve_config(None, {}, {"SM_INPUT_CONFIG_DIR": str(tmp_path)})
    (tmp_path / "hyperparameters.json").write_text(
        json.dumps({HYPERPARAMETER: json.dumps({**CONFIG, "adapter": "lorax"})})
    )
    environ = {"SM_INPUT_CONFIG_DIR": str(tmp_path), "SM_CHANNEL_TRAIN": "/t", "SM_MODEL_DIR": "/m"}
    with pytest.raises(TrainerError, match=r"\(tunefleet_config\): adapter"):
        resolve_config(None, {}, environ)
