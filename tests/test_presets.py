"""Recommended settings: the preset registry, the order of precedence, and the CLI."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from densitykit import presets
from densitykit.cli import app
from densitykit.data import names
from densitykit.errors import DuplicateNameError, UnknownNameError
from densitykit.heads import HEADS

runner = CliRunner()


def test_every_default_names_a_preset_a_data_set_and_a_head() -> None:
    kinds = {"1d", "2d", "image", "vector"}
    for (dataset, head), preset in presets.DEFAULTS.items():
        assert preset in presets.PRESETS
        assert dataset in names() or dataset.removeprefix("file:") in kinds
        assert head is None or head in HEADS


def test_every_preset_holds_only_config_fields() -> None:
    allowed = presets.MODEL_SETTINGS | presets.TRAIN_SETTINGS | {"data_options"}
    for name in presets.PRESETS.names():
        assert set(presets.get_preset(name)) <= allowed, name


def test_registering_is_one_line_and_checked() -> None:
    try:
        presets.register_preset("test-preset", {"lr": 0.1}, description="A test.",
                                datasets=["shapes"], heads=["categorical"])  # fmt: skip
        assert presets.default_preset("shapes", "categorical") == "test-preset"
        with pytest.raises(DuplicateNameError):
            presets.register_preset("test-preset", {}, description="Again.")
    finally:
        presets.PRESETS.unregister("test-preset")
        presets.DEFAULTS.pop(("shapes", "categorical"), None)
    with pytest.raises(ValueError, match="unknown settings \\['learning_rate'\\]"):
        presets.register_preset("bad", {"learning_rate": 1}, description="Bad.")
    with pytest.raises(UnknownNameError):
        presets.get_preset("no-such-preset")


def test_user_values_win_over_the_preset_which_wins_over_the_defaults() -> None:
    config = presets.recommended_config("1d-bimodal", "logistic-mixture", lr=0.5)
    assert config.train.lr == 0.5  # given
    assert config.train.epochs == 300 and config.model.hidden_sizes == ()  # preset
    assert config.model.head_options == {"num_components": 4}
    assert config.data.options == {"val_fraction": 0.0}
    assert config.train.batch_size == 100  # library default
    mine = presets.recommended_config("1d-bimodal", "histogram", data_options={"val_fraction": 0.2})
    assert mine.data.options == {"val_fraction": 0.2}
    plain = presets.recommended_config("2d-smiley")
    assert plain.train.epochs == 20 and plain.model.hidden_sizes == (256, 256)


def _fit(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "run"
    result = runner.invoke(app, ["fit", *args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return {"output": result.output, **json.loads((out / "config.json").read_text())}


def test_cli_applies_the_default_preset_and_explicit_options_win(tmp_path: Path) -> None:
    run = _fit(tmp_path, "--data", "1d-gaussian", "--head", "histogram", "--epochs", "2",
               "--lr", "0.01")  # fmt: skip
    assert "preset course-1d-histogram:" in run["output"]
    assert run["train"]["epochs"] == 2 and run["train"]["lr"] == 0.01  # given
    assert run["train"]["patience"] == 30  # from the preset, recorded in config.json
    assert run["data"]["options"]["val_fraction"] == 0.0


def test_cli_preset_none_and_a_named_preset(tmp_path: Path) -> None:
    plain = _fit(tmp_path, "--data", "1d-gaussian", "--preset", "none", "--epochs", "1",
                 "--quiet")  # fmt: skip
    assert plain["train"]["lr"] == 0.001 and plain["model"]["hidden_sizes"] == [256, 256]
    named = _fit(tmp_path / "b", "--data", "1d-gaussian", "--preset", "1d-categorical",
                 "--epochs", "1", "--quiet")  # fmt: skip
    assert named["train"]["lr"] == 0.05 and named["model"]["hidden_sizes"] == []
    result = runner.invoke(app, ["fit", "--preset", "nope", "--out", str(tmp_path / "c")])
    assert result.exit_code == 1 and "unknown preset 'nope'" in result.output


def test_a_file_gets_the_preset_of_its_kind(tmp_path: Path) -> None:
    np.save(tmp_path / "one.npy", np.random.default_rng(0).integers(0, 10, size=200))
    run = _fit(tmp_path, "--data", str(tmp_path / "one.npy"), "--epochs", "1")
    assert "preset 1d-categorical:" in run["output"]
    assert run["model"]["hidden_sizes"] == [] and "val_fraction" not in run["data"]["options"]


def test_datasets_lists_each_sets_defaults() -> None:
    result = runner.invoke(app, ["datasets"])
    assert result.exit_code == 0
    assert "histogram: preset course-1d-histogram (epochs=300" in result.output
    assert "library defaults" in result.output


def test_a_preset_data_option_the_data_set_does_not_take_is_left_out_with_a_note(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="densitykit"):
        shapes = presets.recommended_config("shapes", preset="binarized-mnist-resample")
    assert "resample" not in shapes.data.options
    assert shapes.model.hidden_sizes == (16000,) and shapes.model.dropout == 0.2
    assert "data set 'shapes' takes no 'resample'" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="densitykit"):
        grey = presets.recommended_config(
            "mnist", preset="binarized-mnist-resample", data_options={"binarize": "stochastic"}
        )
    assert grey.data.options == {"binarize": "stochastic", "resample": True}
    assert caplog.text == ""
    mine = presets.recommended_config(
        "binarized-mnist", preset="binarized-mnist-resample", data_options={"resample": False}
    )
    assert mine.data.options == {"resample": False}
