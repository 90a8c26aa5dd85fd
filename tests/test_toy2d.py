"""The 2-D real data sets: seeded draws, exact densities, and the run's density picture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from densitykit.cli import app
from densitykit.data import load_dataset, names
from densitykit.data.toy2d import NAMES, draw, true_log_density

runner = CliRunner()


def test_every_set_is_registered_seeded_and_sized() -> None:
    assert set(NAMES) <= set(names())
    for name in NAMES:
        ds = load_dataset(name, num_samples=200, seed=3)
        assert ds.kind == "table" and ds.table.kinds == ("real", "real")
        assert len(ds.train) + len(ds.val) == 200 and len(ds.test) == 50
        again = load_dataset(name, num_samples=200, seed=3)
        assert (again.train == ds.train).all()
        assert not np.array_equal(draw(name, 50, seed=1), draw(name, 50, seed=2))


@pytest.mark.parametrize("name", ["8gaussians", "checkerboard", "rings"])
def test_the_exact_densities_integrate_to_one(name: str) -> None:
    side = np.linspace(-6.0, 6.0, 600)  # no point at the origin, where rings is singular
    points = np.stack(np.meshgrid(side, side), axis=-1).reshape(-1, 2)
    density = np.exp(true_log_density(name)(points)).reshape(len(side), len(side))
    total = np.trapezoid(np.trapezoid(density, side, axis=1), side)
    assert total == pytest.approx(1.0, abs=5e-3)


@pytest.mark.parametrize("name", ["8gaussians", "checkerboard", "rings"])
def test_draws_follow_the_exact_density(name: str) -> None:
    """Draws land where the density is: their mean log-density beats a shifted copy's,
    and no draw falls where the density is zero."""
    points = draw(name, 4000, seed=0)
    log_density = true_log_density(name)(points)
    assert np.isfinite(log_density).all()
    shifted = true_log_density(name)(points + np.array([0.5, 0.3]))
    assert log_density.mean() > np.where(np.isfinite(shifted), shifted, -50).mean() + 0.3


def test_the_moons_and_pinwheel_have_no_exact_density() -> None:
    assert true_log_density("moons") is None and true_log_density("pinwheel") is None
    assert load_dataset("moons", num_samples=100).true_log_density is None


def test_the_plane_picture_is_drawn_for_real_2d_tables_only(tmp_path: Path) -> None:
    import torch

    from densitykit.model import create_model
    from densitykit.runs import is_plane, plane_picture

    ds = load_dataset("rings", num_samples=100)
    assert is_plane(ds) and not is_plane(load_dataset("2d-smiley", grid_size=16, num_samples=50))
    model = create_model("gaussian", 2, num_values=0, hidden_sizes=(4,))
    path = plane_picture(model, ds, tmp_path / "d.png", generator=torch.Generator())
    assert path.stat().st_size > 0


@pytest.mark.slow
def test_a_real_2d_run_draws_its_density_and_compares_with_the_truth(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = [
        "fit", "--data", "checkerboard", "--data-option", "num_samples=400", "--epochs", "1",
        "--hidden-sizes", "8", "--quiet", "--out", str(run),
    ]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (run / "density.png").stat().st_size > 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["true_test_nll_nats"] == pytest.approx(np.log(32.0))
    assert metrics["gap_to_true_nll_nats"] == pytest.approx(metrics["test_nll_nats"] - np.log(32.0))
    picture = tmp_path / "samples.png"
    result = runner.invoke(app, ["sample", str(run), "-n", "100", "--out", str(picture)])
    assert result.exit_code == 0 and picture.stat().st_size > 0
