"""Where the trainer finds its config: given explicitly by whoever launches it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunefleet_trainer.config import CONFIG_ENV, resolve_config
from tunefleet_trainer.errors import TrainerError

CONFIG = {"base_model": "scratch:tiny", "method": "supervised", "adapter": "lora"}
PATHS = {"train": "/opt/ml/input/data/train", "output_dir": "/opt/ml/model"}


def test_a_config_can_be_one_key_of_a_json_file_as_sagemaker_writes_hyperparameters(
    tmp_path: Path,
) -> None:
    hyperparameters = tmp_path / "hyperparameters.json"
    hyperparameters.write_text(json.dumps({"tunefleet_config": json.dumps({**CONFIG, **PATHS})}))
    config = resolve_config(str(hyperparameters), {}, {}, config_key="tunefleet_config")
    assert (config.base_model, config.train, config.output_dir) == (
        "scratch:tiny",
        "/opt/ml/input/data/train",
        "/opt/ml/model",
    )


def test_the_launchers_environment_is_not_read() -> None:
    environ = {
        CONFIG_ENV: json.dumps(CONFIG),
        "SM_CHANNEL_TRAIN": "/opt/ml/input/data/train",
        "SM_MODEL_DIR": "/opt/ml/model",
        "AIP_MODEL_DIR": "gs://bucket/model",
    }
    with pytest.raises(TrainerError, match=r"TUNEFLEET_TRAINER_CONFIG: train: Field required"):
        resolve_config(None, {}, environ)


def test_a_config_file_beats_the_environment_and_flags_beat_both(tmp_path: Path) -> None:
    config_file = tmp_path / "trainer.json"
    config_file.write_text(json.dumps({**CONFIG, **PATHS, "output_dir": "/from/file"}))
    environ = {CONFIG_ENV: json.dumps({**CONFIG, "base_model": "ignored"})}
    config = resolve_config(str(config_file), {"logging_steps": 5, "merge": None}, environ)
    assert (config.output_dir, config.base_model, config.logging_steps, config.merge) == (
        "/from/file",
        "scratch:tiny",
        5,
        False,
    )


def test_a_broken_config_names_itself(tmp_path: Path) -> None:
    hyperparameters = tmp_path / "hyperparameters.json"
    hyperparameters.write_text("{not json")
    with pytest.raises(TrainerError, match=r"hyperparameters\.json: not valid JSON"):
        resolve_config(str(hyperparameters), {}, {}, config_key="tunefleet_config")
    hyperparameters.write_text(
        json.dumps({"tunefleet_config": json.dumps({**CONFIG, **PATHS, "adapter": "lorax"})})
    )
    with pytest.raises(TrainerError, match=r"\(tunefleet_config\): adapter"):
        resolve_config(str(hyperparameters), {}, {}, config_key="tunefleet_config")
    with pytest.raises(TrainerError, match=r"\(other\): no such key"):
        resolve_config(str(hyperparameters), {}, {}, config_key="other")


def test_the_launcher_gives_the_golden_sets_path_and_where_answers_go() -> None:
    """Azure ML knows an input's path only on the command line (``${{inputs.golden}}``):
    the flags complete the evaluation the config asks for, and are refused without one."""
    evaluation = {"max_examples": 3, "baseline": True}
    environ = {CONFIG_ENV: json.dumps({**CONFIG, **PATHS, "evaluation": evaluation})}
    config = resolve_config(
        None,
        {},
        environ,
        evaluation={"golden_set": "/mnt/golden.jsonl", "predictions_dir": "/mnt/answers"},
    )
    assert config.evaluation is not None
    assert (config.evaluation.golden_set, config.evaluation.predictions_dir) == (
        "/mnt/golden.jsonl",
        "/mnt/answers",
    )
    assert config.evaluation.max_examples == 3
    plain = {CONFIG_ENV: json.dumps({**CONFIG, **PATHS})}
    with pytest.raises(TrainerError, match="asks for no evaluation"):
        resolve_config(None, {}, plain, evaluation={"golden_set": "/mnt/golden.jsonl"})
    assert resolve_config(None, {}, plain, evaluation={"golden_set": None}).evaluation is None
