"""The MAF family: the flow is invertible, its log-determinant is the Jacobian's, each
layer is triangular under its ordering, its densities integrate to one (with batch
normalisation in evaluation mode and a MoG base too), every layer's first variable
sees the context, and the incremental sampler inverts exactly as the D-pass inverse."""

from __future__ import annotations

import itertools

import pytest
import torch

import densitykit as dk
from densitykit.errors import DensitykitError
from densitykit.family import FAMILIES, DataFacts
from densitykit.maf import MAFConfig, MAFModel, orderings

VARIANTS = [
    # (base, batch_norm, permutation, conditional)
    ("normal", False, "reverse", False),
    ("normal", True, "random", False),
    ("mog", False, "random", True),
    ("mog", True, "reverse", True),
]
IDS = [
    f"{base}-{'bn' if bn else 'nobn'}-{perm}-{'cond' if cond else 'uncond'}"
    for base, bn, perm, cond in VARIANTS
]


def _model(
    dim: int,
    base: str = "normal",
    batch_norm: bool = False,
    permutation: str = "reverse",
    conditional: bool = False,
    *,
    num_transforms: int = 3,
    seed: int = 0,
    log_scale_bound: float = 3.0,
) -> MAFModel:
    """A tiny float64 flow in evaluation mode whose batch norms hold fitted, not trivial,
    running statistics and parameters."""
    torch.manual_seed(seed)
    config = MAFConfig(
        dim=dim,
        num_transforms=num_transforms,
        hidden_sizes=(12, 12),
        base=base,
        num_components=3,
        batch_norm=batch_norm,
        permutation=permutation,
        num_labels=3 if conditional else 0,
        seed=seed,
        log_scale_bound=log_scale_bound,
    )
    model = MAFModel(config).double()
    with torch.no_grad():
        for norm in model.norms:
            norm.log_gamma.uniform_(-0.3, 0.3)
            norm.beta.uniform_(-0.3, 0.3)
    if batch_norm:  # a few training-mode passes move the running statistics
        model.train()
        data = 1.5 * torch.randn(64, dim, dtype=torch.float64) + 0.5
        context = torch.randint(0, 3, (64,)) if conditional else None
        for _ in range(3):
            model.log_prob(data, context=context)
    return model.eval()


def _context(model: MAFModel, count: int, seed: int = 0) -> torch.Tensor | None:
    if not model.is_conditional:
        return None
    return torch.randint(0, 3, (count,), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("base", "batch_norm", "permutation", "conditional"), VARIANTS, ids=IDS)
def test_round_trip(base: str, batch_norm: bool, permutation: str, conditional: bool) -> None:
    model = _model(5, base, batch_norm, permutation, conditional)
    x = 2 * torch.randn(50, 5, dtype=torch.float64)
    context = _context(model, 50)
    z, _ = model.transform(x, context=context)
    for reference in (False, True):
        back = model.inverse(z, context=context, reference=reference)
        assert (back - x).abs().max() < 1e-10
    assert (z - x).abs().max() > 1e-2  # the flow does transform


@pytest.mark.parametrize(("base", "batch_norm", "permutation", "conditional"), VARIANTS, ids=IDS)
def test_log_det_is_the_jacobians(
    base: str, batch_norm: bool, permutation: str, conditional: bool
) -> None:
    model = _model(4, base, batch_norm, permutation, conditional)
    x = torch.randn(6, 4, dtype=torch.float64)
    context = _context(model, 6)
    _, log_det = model.transform(x, context=context)
    for row in range(x.shape[0]):
        row_context = None if context is None else context[row : row + 1]
        jacobian = torch.autograd.functional.jacobian(
            lambda v, c=row_context: model.transform(v[None], context=c)[0][0], x[row]
        )
        assert torch.allclose(log_det[row], torch.linalg.slogdet(jacobian)[1], atol=1e-10)


@pytest.mark.parametrize("permutation", ["reverse", "random"])
def test_each_layer_is_triangular_under_its_ordering(permutation: str) -> None:
    model = _model(5, permutation=permutation, num_transforms=3)
    assert len({tuple(row) for row in model.orderings.tolist()}) > 1  # orderings change
    for index in range(3):
        order = model.orderings[index]
        for seed in range(3):  # several points: ReLU can hide an edge at one
            h = torch.randn(5, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
            jacobian = torch.autograd.functional.jacobian(
                lambda v, k=index: model._layer(k, v[None], None)[0][0], h
            )
            in_order = jacobian[order][:, order]  # rows: outputs, columns: inputs
            assert torch.equal(torch.triu(in_order, 1), torch.zeros_like(in_order))
            assert bool((in_order.diagonal() > 0).all())
            assert torch.tril(in_order, -1).abs().max() > 0  # and not diagonal


def _integral_1d(model: MAFModel, context: torch.Tensor | None = None) -> float:
    grid = torch.linspace(-15, 15, 6001, dtype=torch.float64)[:, None]
    with torch.no_grad():
        density = model.log_prob(grid, context=context).exp()
    return float(torch.trapezoid(density, grid[:, 0]))


@pytest.mark.parametrize(("base", "batch_norm", "permutation", "conditional"), VARIANTS, ids=IDS)
def test_densities_integrate_to_one_in_1d(
    base: str, batch_norm: bool, permutation: str, conditional: bool
) -> None:
    model = _model(1, base, batch_norm, permutation, conditional)
    context = torch.tensor(2) if conditional else None
    assert _integral_1d(model, context) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize(("base", "batch_norm", "permutation", "conditional"), VARIANTS, ids=IDS)
def test_densities_integrate_to_one_in_2d(
    base: str, batch_norm: bool, permutation: str, conditional: bool
) -> None:
    model = _model(2, base, batch_norm, permutation, conditional, num_transforms=2)
    axis = torch.linspace(-12, 12, 401, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)
    context = torch.tensor(1) if conditional else None
    with torch.no_grad():
        density = model.log_prob(grid, context=context).exp().reshape(401, 401)
    total = torch.trapezoid(torch.trapezoid(density, axis, dim=1), axis)
    assert float(total) == pytest.approx(1.0, abs=2e-3)


def test_batch_norm_uses_running_statistics_in_evaluation_only() -> None:
    model = _model(3, batch_norm=True)
    x = torch.randn(8, 3, dtype=torch.float64)
    before = model.norms[0].running_mean.clone()
    evaluated = model.log_prob(x)
    assert torch.equal(model.norms[0].running_mean, before)  # evaluation: no update
    assert torch.allclose(model.log_prob(x[:1]), evaluated[:1])  # per row, not per batch
    model.train()
    trained = model.log_prob(x)
    assert not torch.equal(model.norms[0].running_mean, before)
    assert not torch.allclose(trained, evaluated)  # the batch's statistics


def test_the_first_variable_of_every_layer_sees_the_context() -> None:
    model = _model(4, conditional=True, permutation="random", num_transforms=3)
    h = torch.randn(1, 4, dtype=torch.float64).expand(3, 4)
    labels = model.encode_context(torch.arange(3), (3,))
    for index in range(3):
        first = int(model.orderings[index, 0])
        out, _ = model._layer(index, h, labels)
        assert out[:, first].unique().numel() == 3, f"layer {index}"
    base = _model(4, "mog", conditional=True, num_transforms=1)
    u = torch.zeros(3, 4, dtype=torch.float64)  # in the base's ordering: its first is u[:, 0]
    params = base.base_made(u, context=base.encode_context(torch.arange(3), (3,)))
    assert params[:, 0].unique(dim=0).shape[0] == 3  # the base's first variable too
    one = _model(1, conditional=True)
    densities = [_integral_1d(one, torch.tensor(label)) for label in range(3)]
    assert densities == pytest.approx([1.0] * 3, abs=1e-6)
    x = torch.zeros(3, 1, dtype=torch.float64)
    assert one.log_prob(x, context=torch.arange(3)).unique().numel() == 3


def test_real_features_condition_the_flow() -> None:
    model = MAFModel(MAFConfig(dim=2, num_transforms=2, hidden_sizes=(8,), context_size=3))
    x = torch.zeros(2, 2)
    context = torch.tensor([[0.0, 0.0, 0.0], [1.0, -1.0, 2.0]])
    log_prob = model.log_prob(x, context=context)
    assert log_prob[0] != log_prob[1]
    assert model.sample(4, context=torch.ones(3)).shape == (4, 2)
    with pytest.raises(ValueError, match="conditional"):
        model.log_prob(x)
    with pytest.raises(TypeError, match="floating"):
        model.log_prob(x, context=torch.ones(2, 3, dtype=torch.long))


@pytest.mark.parametrize(("base", "batch_norm", "permutation", "conditional"), VARIANTS, ids=IDS)
def test_fast_sampler_equals_the_d_pass_inverse(
    base: str, batch_norm: bool, permutation: str, conditional: bool
) -> None:
    model = _model(6, base, batch_norm, permutation, conditional)
    context = _context(model, 40, seed=3)
    draws = {}
    for reference in (False, True):
        generator = torch.Generator().manual_seed(7)
        draws[reference] = model.sample(
            40, generator=generator, context=context, reference=reference
        )
    assert draws[False].dtype == torch.float64
    assert (draws[False] - draws[True]).abs().max() < 1e-10
    z = model.sample_base(
        40, generator=torch.Generator().manual_seed(7), context=model.encode_context(context, (40,))
    )
    assert torch.allclose(model.transform(draws[False], context=context)[0], z, atol=1e-9)


def test_samples_follow_the_density() -> None:
    """The histogram of 1-D samples matches the density (a wrong inverse would not)."""
    model = _model(1, "mog", num_transforms=2)
    samples = model.sample(20_000, generator=torch.Generator().manual_seed(0))[:, 0]
    edges = torch.quantile(samples, torch.linspace(0.05, 0.95, 7, dtype=torch.float64))
    grid = torch.linspace(float(edges[0]), float(edges[-1]), 4001, dtype=torch.float64)
    with torch.no_grad():
        density = model.log_prob(grid[:, None]).exp()
    for low, high in itertools.pairwise(edges.tolist()):
        inside = (grid >= low) & (grid <= high)
        mass = float(torch.trapezoid(density[inside], grid[inside]))
        frequency = float(((samples >= low) & (samples < high)).double().mean())
        assert frequency == pytest.approx(mass, abs=0.012)


def test_config_round_trip_and_unknown_keys() -> None:
    config = MAFConfig(dim=3, num_transforms=2, hidden_sizes=(4, 5), base="mog", batch_norm=True)
    assert MAFConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown maf config keys"):
        MAFConfig.from_dict({**config.to_dict(), "flows": 3})
    with pytest.raises(ValueError, match="permutation"):
        MAFConfig(dim=3, permutation="shuffle")
    with pytest.raises(ValueError, match="base"):
        MAFConfig(dim=3, base="uniform")
    with pytest.raises(ValueError, match="log_scale_bound"):
        MAFConfig(dim=3, log_scale_bound=0)
    assert FAMILIES.get("maf") is MAFModel


def test_orderings_are_seeded_and_recorded() -> None:
    first = orderings(MAFConfig(dim=6, permutation="random", seed=1))
    assert torch.equal(first, orderings(MAFConfig(dim=6, permutation="random", seed=1)))
    assert not torch.equal(first, orderings(MAFConfig(dim=6, permutation="random", seed=2)))
    reverse = orderings(MAFConfig(dim=3, num_transforms=2, base="mog"))
    assert reverse.tolist() == [[0, 1, 2], [2, 1, 0], [0, 1, 2]]
    assert "orderings" in MAFModel(MAFConfig(dim=3, hidden_sizes=(4,))).state_dict()


def test_checkpoint_round_trip(tmp_path) -> None:
    model = _model(3, "mog", batch_norm=True, permutation="random", conditional=True).float()
    x, context = torch.randn(5, 3), torch.tensor([0, 1, 2, 0, 1])
    dk.save_checkpoint(tmp_path / "maf.pt", model)
    again = dk.load_checkpoint(tmp_path / "maf.pt")
    assert isinstance(again, MAFModel) and again.config == model.config
    again.eval()
    assert torch.equal(again.log_prob(x, context=context), model.log_prob(x, context=context))


def test_discrete_data_are_refused_in_one_line() -> None:
    model = MAFModel(MAFConfig(dim=2, hidden_sizes=(4,)))
    with pytest.raises(TypeError, match="a flow cannot model a discrete column") as caught:
        model.log_prob(torch.tensor([[0, 1]]))
    assert "\n" not in str(caught.value) and "made" in str(caught.value)
    facts = DataFacts(name="shapes", dim=2, num_values=2, kind="image", shape=(1, 2))
    with pytest.raises(DensitykitError, match="a flow cannot model a discrete column"):
        MAFModel.complete_config(MAFConfig(), facts)
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.log_prob(torch.tensor([[0.0, float("nan")]]))


def test_no_subset_queries() -> None:
    model = MAFModel(MAFConfig(dim=2, hidden_sizes=(4,)))
    assert model.capabilities == frozenset()
    assert not any(model.can(name) for name in dk.family.CAPABILITIES)


def test_parameter_count_matches_the_model() -> None:
    for config in (
        MAFConfig(dim=3, num_transforms=2, hidden_sizes=(4,), base="mog", num_components=2),
        MAFConfig(dim=4, num_transforms=3, hidden_sizes=(5, 6), batch_norm=True, num_labels=3),
    ):
        state = MAFModel(config).state_dict().values()
        count = sum(v.numel() for v in state if v.is_floating_point())
        assert MAFModel.parameter_count(config) == count


def test_fit_lowers_the_nll_of_correlated_data() -> None:
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(600, 1, generator=generator)
    data = torch.cat([base, base**2 + 0.1 * torch.randn(600, 1, generator=generator)], 1)
    model = MAFModel(MAFConfig(dim=2, num_transforms=3, hidden_sizes=(16,), batch_norm=True))
    before = dk.evaluate(model, data[500:])
    result = dk.fit(model, data[:500], data[500:], dk.TrainConfig(epochs=8, batch_size=50, lr=3e-3))
    assert result.best_val_nll < before - 0.3


# -- the command line --------------------------------------------------------------------
def _fit(tmp_path, *args: object):
    from typer.testing import CliRunner

    from densitykit.cli import app

    command = ["fit", "--data", "shapes", "--data-option", "size=8",
               "--data-option", "num_samples=50", "--epochs", "1", "--quiet",
               "--out", str(tmp_path / "run"), *map(str, args)]  # fmt: skip
    return CliRunner().invoke(app, command)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--family", "maf", "--num-transforms", "2"], "a flow cannot model a discrete column"),
        (["--family", "maf", "--masks", "natural"], "--masks set MADE settings"),
        (["--family", "maf", "--head", "gaussian"], "--head does not apply to --family maf"),
        (["--family", "maf", "--family-option", "flows=2"], "has no such setting"),
        (["--num-transforms", "2"], "does not apply to --family made"),
        (["--family", "orderless", "--num-transforms", "2"], "--num-transforms does not apply"),
    ],
)
def test_the_command_line_refuses_in_one_line(tmp_path, args, message) -> None:
    result = _fit(tmp_path, *args)
    assert result.exit_code == 1 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_the_command_line_builds_the_flow_it_is_told() -> None:
    from densitykit import cli

    given = {"family", "num_transforms", "hidden_sizes", "activation", "seed", "family_option",
             "num_components"}  # fmt: skip
    options = {"head": None, "head_options": {}, "hidden_sizes": (7, 9), "num_transforms": 2,
               "activation": "tanh", "seed": 4, "num_components": 3, "mask_options": {},
               "family_option": ["base=mog", "batch_norm=true", "permutation=random"]}  # fmt: skip
    config = cli._other_family_config("maf", options, given)
    assert config == MAFConfig(num_transforms=2, hidden_sizes=(7, 9), activation="tanh", seed=4,
                               base="mog", num_components=3, batch_norm=True,
                               permutation="random")  # fmt: skip


def test_training_resumes_bit_identically_with_batch_norm() -> None:
    """A run resumed from its state after epoch 1 ends as the uninterrupted run (the
    running statistics are buffers, saved with the weights)."""
    import copy

    from densitykit.train import Callback, TrainState

    class Snapshot(Callback):
        state: TrainState | None = None

        def on_epoch_end(self, state: TrainState, record: dict) -> None:
            if state.epoch == 1:
                self.state = TrainState.from_dict(copy.deepcopy(state.to_dict()))

    data = torch.randn(90, 3, generator=torch.Generator().manual_seed(0))
    data[:, 2] += data[:, 0] * data[:, 1]

    def run(state: TrainState | None = None, callbacks=()) -> tuple[MAFModel, TrainState]:
        torch.manual_seed(5 if state is not None else 0)  # the state must bring the weights
        model = MAFModel(MAFConfig(dim=3, num_transforms=2, hidden_sizes=(8,), batch_norm=True,
                                   permutation="random"))  # fmt: skip
        config = dk.TrainConfig(epochs=3, batch_size=30, patience=None, device="cpu")
        return model, dk.fit(model, data, data[:30], config, state=state, callbacks=callbacks)

    snapshot = Snapshot()
    straight_model, straight = run(callbacks=[snapshot])
    resumed_model, resumed = run(state=snapshot.state)
    for key, value in straight_model.state_dict().items():
        assert torch.equal(value, resumed_model.state_dict()[key]), key
    assert resumed.history[-1]["val_nll"] == straight.history[-1]["val_nll"]


# -- the command line on real data -------------------------------------------------------
def _real_file(folder, *, discrete_column: bool = False):
    import numpy as np

    rng = np.random.default_rng(0)
    first = rng.normal(size=(400, 1))
    columns = [first, first**2 + 0.3 * rng.normal(size=(400, 1)), rng.normal(size=(400, 1))]
    if discrete_column:
        columns.append(rng.integers(0, 3, size=(400, 1)).astype(float))
    path = folder / ("mixed.npy" if discrete_column else "real.npy")
    np.save(path, np.concatenate(columns, 1).astype(np.float32))
    return path


MAF_OPTIONS = ["--family", "maf", "--num-transforms", "2", "--hidden-sizes", "16,16",
               "--family-option", "base=mog", "--num-components", "2"]  # fmt: skip


def _invoke(*args: object):
    from typer.testing import CliRunner

    from densitykit.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_a_run_on_real_data_fits_evaluates_samples_and_resumes(tmp_path) -> None:
    import numpy as np

    from densitykit import runs

    out = tmp_path / "run"
    data = _real_file(tmp_path)
    fitted = _invoke("fit", "--data", data, *MAF_OPTIONS, "--epochs", "1", "--quiet", "--out", out)
    assert fitted.exit_code == 0, fitted.output
    run = runs.load_run(out)
    assert run.config.family == "maf" and run.model.config.base == "mog"
    assert run.model.config.num_transforms == 2 and run.model.config.hidden_sizes == (16, 16)
    evaluated = _invoke("eval", out)
    assert evaluated.exit_code == 0 and "test NLL" in evaluated.output, evaluated.output
    sampled = _invoke("sample", out, "-n", "7", "-o", tmp_path / "s.npy")
    assert sampled.exit_code == 0, sampled.output
    samples = np.load(tmp_path / "s.npy")
    assert samples.shape == (7, 3) and np.issubdtype(samples.dtype, np.floating)
    resumed = _invoke("resume", out, "--epochs", "2", "--quiet")
    assert resumed.exit_code == 0, resumed.output
    scored = _invoke("score", out, data, "-o", tmp_path / "scores.csv")
    assert scored.exit_code == 0 and "scored 400 examples" in scored.output, scored.output
    for command in (
        ["eval", out, "--observed", "top-half"],
        ["inpaint", out, "--out", tmp_path / "i.png"],
    ):
        refused = _invoke(*command)
        assert refused.exit_code == 1 and "needs " in refused.output, refused.output
        assert "a maf model does not answer" in refused.output
        assert len(refused.output.strip().splitlines()) == 1


def test_a_table_with_a_discrete_column_is_refused_in_one_line(tmp_path) -> None:
    data = _real_file(tmp_path, discrete_column=True)
    out = tmp_path / "run"
    result = _invoke("fit", "--data", data, *MAF_OPTIONS, "--epochs", "1", "--out", out)
    assert result.exit_code == 1, result.output
    assert "a flow cannot model a discrete column" in result.output
    assert "column4 (categorical)" in result.output and "--family made" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.slow
def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from densitykit import runs
    from densitykit.checkpoint import read_json

    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(repo))
    data = _real_file(tmp_path)
    fit = [sys.executable, "-m", "densitykit", "fit", "--data", str(data), *MAF_OPTIONS,
           "--family-option", "batch_norm=true", "--epochs", "8", "--patience", "0",
           "--batch-size", "10", "--quiet"]  # fmt: skip
    reference = tmp_path / "reference"
    subprocess.run([*fit, "--out", str(reference)], check=True, env=env, timeout=600)
    killed = tmp_path / "killed"
    process = subprocess.Popen([*fit, "--out", str(killed)], env=env)
    log = killed / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 2:
            break
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert not (killed / "metrics.json").exists()
    subprocess.run([sys.executable, "-m", "densitykit", "resume", str(killed), "--quiet"],
                   check=True, env=env, timeout=600)  # fmt: skip

    def timeless(record: dict) -> dict:
        return {k: v for k, v in record.items() if k not in ("seconds", "train_seconds")}

    expected = read_json(reference / "metrics.json")
    assert timeless(read_json(killed / "metrics.json")) == timeless(expected)
    a = runs.load_run(reference).model.state_dict()
    b = runs.load_run(killed).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_two_gloo_processes_train_like_one(tmp_path) -> None:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("needs torch.distributed gloo")
    from test_distributed import WEIGHT_TOLERANCE, _max_abs_diff, _torchrun

    from densitykit.checkpoint import load_object

    data = _real_file(tmp_path)
    args = ["--data", str(data), *MAF_OPTIONS, "--epochs", "2", "--batch-size", "40",
            "--quiet", "--device", "cpu"]  # fmt: skip
    workdir = tmp_path / "torchrun"
    workdir.mkdir()
    result = _torchrun(["fit", *args, "--out", "run"], cwd=workdir, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    single = tmp_path / "single"
    assert _invoke("fit", *args, "--out", single).exit_code == 0
    state_parallel = load_object(workdir / "run" / "train_state.pt")
    state_single = load_object(single / "train_state.pt")
    assert state_parallel["step"] == state_single["step"]
    assert _max_abs_diff(state_parallel["model"], state_single["model"]) < WEIGHT_TOLERANCE


@pytest.mark.slow
def test_packed_layers_invert_exactly() -> None:
    """Large MADEs store only their mask's blocks (``layout="auto"`` packs them): the
    incremental inverse reads those as the dense one does."""
    torch.manual_seed(0)
    model = MAFModel(MAFConfig(dim=200, num_transforms=1, hidden_sizes=(600, 600))).double()
    assert {made.layout for made in model.transforms} == {"packed"}
    z = torch.randn(5, 200, dtype=torch.float64)
    fast, reference = model.inverse(z), model.inverse(z, reference=True)
    assert (fast - reference).abs().max() < 1e-10
    assert (model.transform(fast)[0] - z).abs().max() < 1e-10


def test_a_built_in_2d_real_data_set_trains_and_draws_its_density(tmp_path) -> None:
    out = tmp_path / "moons"
    fitted = _invoke("fit", "--data", "moons", "--data-option", "num_samples=300",
                     *MAF_OPTIONS, "--epochs", "1", "--quiet", "--out", out)  # fmt: skip
    assert fitted.exit_code == 0, fitted.output
    assert (out / "density.png").exists()
    sampled = _invoke("sample", out, "-n", "50", "-o", tmp_path / "moons.png")
    assert sampled.exit_code == 0 and (tmp_path / "moons.png").exists(), sampled.output
