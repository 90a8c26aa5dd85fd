"""densitykit.inpainting: observed patterns by name or picture, the conditional NLL in
batches and completions, for every family that answers the queries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import densitykit as dk
from densitykit.inpainting import complete_images, conditional_nll, observed_pattern_from_spec
from densitykit.orderless import OrderlessConfig, OrderlessModel

SHAPE = (2, 3)
DIM = 6


def _made() -> dk.AutoregressiveModel:
    torch.manual_seed(0)
    return dk.create_model(
        "bernoulli", DIM, hidden_sizes=(16,), masks="any-order", num_masks=2
    ).double()


def _orderless() -> OrderlessModel:
    torch.manual_seed(0)
    return OrderlessModel(OrderlessConfig("bernoulli", DIM, hidden_sizes=(16,))).double()


def _labelled() -> dk.AutoregressiveModel:
    torch.manual_seed(0)
    return dk.create_model("bernoulli", DIM, hidden_sizes=(16,), num_labels=3).double()


FAMILIES = {"made": _made, "orderless": _orderless}


def _data(count: int = 7) -> torch.Tensor:
    return torch.randint(0, 2, (count, DIM), generator=torch.Generator().manual_seed(1))


# -- patterns ------------------------------------------------------------------------------
def test_a_named_pattern_is_the_queries_one() -> None:
    for name in ("top-half", "left-half", "random:0.5"):
        ours = observed_pattern_from_spec(name, SHAPE, 4, torch.Generator().manual_seed(3))
        theirs = dk.queries.observed_pattern(
            name, SHAPE, 4, generator=torch.Generator().manual_seed(3)
        )
        assert torch.equal(ours, theirs), name


def _picture(path: Path, grey: np.ndarray) -> Path:
    Image.fromarray(grey.astype(np.uint8)).save(path)
    return path


def test_a_picture_pattern_observes_its_light_pixels(tmp_path: Path) -> None:
    grey = np.array([[255, 0, 200], [10, 128, 127]])
    path = _picture(tmp_path / "pattern.png", grey)
    observed = observed_pattern_from_spec(str(path), SHAPE, 3)
    assert observed.shape == (3, DIM) and observed.dtype == torch.bool
    assert observed[0].tolist() == [True, False, True, False, True, False]
    assert torch.equal(observed[0], observed[2])


def test_a_picture_pattern_is_refused_when_it_does_not_fit(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no pattern picture"):
        observed_pattern_from_spec(str(tmp_path / "missing.png"), SHAPE, 1)
    wrong = _picture(tmp_path / "wrong.png", np.full((3, 3), 255))
    with pytest.raises(ValueError, match="is 3 x 3 pixels"):
        observed_pattern_from_spec(str(wrong), SHAPE, 1)
    light = _picture(tmp_path / "light.png", np.full(SHAPE, 255))
    with pytest.raises(ValueError, match="light .observed. and dark .missing. pixels"):
        observed_pattern_from_spec(str(light), SHAPE, 1)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a picture")
    with pytest.raises(ValueError, match="cannot read"):
        observed_pattern_from_spec(str(broken), SHAPE, 1)
    with pytest.raises(ValueError, match="needs image data"):
        observed_pattern_from_spec(str(light), (DIM,), 1)


# -- the conditional NLL ---------------------------------------------------------------------
@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("batch_size", [1, 3, 1000])
def test_conditional_nll_is_the_models_query_in_batches(family: str, batch_size: int) -> None:
    model = FAMILIES[family]()
    data = _data()
    observed = observed_pattern_from_spec("random:0.5", SHAPE, 7, torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = -model.conditional_log_prob(data, observed)
    nll = conditional_nll(model, data, observed, batch_size=batch_size)
    assert nll.shape == (7,)
    torch.testing.assert_close(nll, expected)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_conditional_nll_takes_one_pattern_for_all_and_connectivities(family: str) -> None:
    model = FAMILIES[family]()
    data = _data()
    pattern = observed_pattern_from_spec("top-half", SHAPE, 1)[0]
    drawn = model.draw_orderings(3, seed=5) if family == "made" else model.orderings(3, seed=5)
    with torch.no_grad():
        expected = -model.conditional_log_prob(data, pattern.expand(7, -1), connectivities=drawn)
    nll = conditional_nll(model, data, pattern, connectivities=drawn, batch_size=2)
    torch.testing.assert_close(nll, expected)


def test_conditional_nll_passes_each_batch_its_context() -> None:
    model = _labelled()
    data, labels = _data(), torch.tensor([0, 1, 2, 0, 1, 2, 0])
    observed = observed_pattern_from_spec("left-half", SHAPE, 7)
    with torch.no_grad():
        expected = -model.conditional_log_prob(data, observed, context=labels)
    nll = conditional_nll(model, data, observed, context=labels, batch_size=2)
    torch.testing.assert_close(nll, expected)
    other = conditional_nll(model, data, observed, context=(labels + 1) % 3, batch_size=2)
    assert not torch.allclose(nll, other)


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, True])
def test_conditional_nll_refuses_a_bad_batch_size(batch_size: object) -> None:
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        conditional_nll(_made(), _data(), torch.ones(DIM, dtype=torch.bool), batch_size=batch_size)


# -- completions -------------------------------------------------------------------------
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_complete_images_keeps_the_observed_values_and_builds_the_rows(family: str) -> None:
    model = FAMILIES[family]()
    images = _data(3)
    observed = observed_pattern_from_spec("top-half", SHAPE, 3)
    generator = torch.Generator().manual_seed(0)
    completed, rows = complete_images(model, images, observed, 4, generator=generator)
    assert completed.shape == (12, DIM) and rows.shape == (18, DIM)
    repeated = images.repeat_interleave(4, 0)
    kept = observed.repeat_interleave(4, 0)
    assert torch.equal(completed[kept], repeated[kept])
    expected = dk.plots.completion_rows(images, observed, completed)
    torch.testing.assert_close(rows, expected, equal_nan=True, rtol=0, atol=0)
    again, _ = complete_images(
        model, images, observed, 4, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(completed, again)  # the generator draws them


def test_complete_images_repeats_each_images_context() -> None:
    model = _labelled()
    images, labels = _data(2), torch.tensor([0, 2])
    observed = observed_pattern_from_spec("top-half", SHAPE, 2)
    generator = torch.Generator().manual_seed(0)
    completed, _ = complete_images(model, images, observed, 3, generator=generator, context=labels)
    expected = model.complete(
        images.repeat_interleave(3, 0),
        observed.repeat_interleave(3, 0),
        generator=torch.Generator().manual_seed(0),
        context=labels.repeat_interleave(3, 0),
    )
    assert torch.equal(completed, expected)
