"""The orderless model: exact by enumeration, unread missing values, completions, training."""

from __future__ import annotations

import itertools
import math
import pickle

import pytest
import torch
from helpers import every_value, frequencies_match

import densitykit as dk
from densitykit.errors import CheckpointError
from densitykit.masks import ConnectivitySampler
from densitykit.orderless import OrderlessConfig, OrderlessModel
from densitykit.train import Callback, TrainConfig, fit

# Tiny models of every head with parameters per variable: (head, D, K, head options).
TINY = [
    ("bernoulli", 4, None, {}),
    ("categorical", 3, 3, {"one_hot": True}),
    ("categorical", 3, 3, {"one_hot": False}),
    ("logistic-mixture", 3, 3, {"num_components": 2, "one_hot": False}),
    ("logistic-mixture", 3, 3, {"num_components": 2, "one_hot": True}),
]
TINY_IDS = [f"{h}-{'onehot' if o.get('one_hot') else 'scalar'}" for h, _, _, o in TINY]


def tiny(
    head: str,
    dim: int,
    num_values: int | None,
    options: dict,
    *,
    hidden_sizes: tuple[int, ...] = (7, 5),
    direct: bool = True,
    num_orderings: int = 3,
) -> OrderlessModel:
    """A float64 orderless model with large weights: peaked conditionals that depend on
    the observed values."""
    torch.manual_seed(0)
    config = OrderlessConfig(
        head,
        dim,
        num_values,
        options,
        hidden_sizes=hidden_sizes,
        direct_connections=direct,
        num_orderings=num_orderings,
        ordering_seed=5,
    )
    model = OrderlessModel(config).double()
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for parameter in model.parameters():
            scale = 3.0 / math.sqrt(max(parameter.shape[-1], 1))
            parameter.copy_(torch.randn(parameter.shape, generator=generator).double() * scale)
    return model


def every_pattern(dim: int) -> list[torch.Tensor]:
    return [torch.tensor(p) for p in itertools.product([False, True], repeat=dim)]


def num_values_of(model: OrderlessModel) -> int:
    return model.head.num_values


# -- exact by enumeration -------------------------------------------------------------------


@pytest.mark.parametrize(("head", "dim", "num_values", "options"), TINY, ids=TINY_IDS)
@pytest.mark.parametrize("hidden_sizes", [(6,), (7, 5)], ids=["1", "2"])
@pytest.mark.parametrize("direct", [False, True], ids=["", "direct"])
def test_joint_conditional_and_marginal_each_sum_to_one(
    head: str,
    dim: int,
    num_values: int | None,
    options: dict,
    hidden_sizes: tuple[int, ...],
    direct: bool,
) -> None:
    model = tiny(head, dim, num_values, options, hidden_sizes=hidden_sizes, direct=direct)
    values = every_value(dim, num_values_of(model))
    one = torch.tensor(1.0, dtype=torch.float64)
    torch.testing.assert_close(model.log_prob(values).exp().sum(), one)
    for pattern in every_pattern(dim):
        if not pattern.all():
            # For each observed value, the conditional sums to 1 over the missing ones.
            conditional = model.conditional_log_prob(values, pattern).exp()
            keys = [tuple(row) for row in values[:, pattern].tolist()]
            for key in set(keys):
                rows = torch.tensor([k == key for k in keys])
                torch.testing.assert_close(conditional[rows].sum(), one)
        if pattern.any():
            # The marginal sums to 1 over the observed values (each counted once).
            firsts = {}
            for row, key in enumerate(tuple(r) for r in values[:, pattern].tolist()):
                firsts.setdefault(key, row)
            rows = torch.tensor(sorted(firsts.values()))
            marginal = model.marginal_log_prob(values[rows], pattern).exp()
            torch.testing.assert_close(marginal.sum(), one)


@pytest.mark.parametrize(("head", "dim", "num_values", "options"), TINY, ids=TINY_IDS)
def test_one_ordering_marginal_plus_conditional_is_the_joint_of_the_observed_first_ordering(
    head: str, dim: int, num_values: int | None, options: dict
) -> None:
    model = tiny(head, dim, num_values, options)
    values = every_value(dim, num_values_of(model))
    base = model.orderings(1, seed=9)
    for pattern in every_pattern(dim):
        if pattern.all() or not pattern.any():
            continue
        moved = torch.cat([base[0][pattern[base[0]]], base[0][~pattern[base[0]]]])[None]
        both = model.marginal_log_prob(values, pattern, base) + model.conditional_log_prob(
            values, pattern, base
        )
        torch.testing.assert_close(both, model.log_prob(values, moved))


@pytest.mark.parametrize(("head", "dim", "num_values", "options"), TINY, ids=TINY_IDS)
@pytest.mark.parametrize("hidden_sizes", [(6,), (7, 5)], ids=["1", "2"])
@pytest.mark.parametrize("direct", [False, True], ids=["", "direct"])
def test_each_step_of_the_chain_is_the_network_given_the_variables_before_it(
    head: str,
    dim: int,
    num_values: int | None,
    options: dict,
    hidden_sizes: tuple[int, ...],
    direct: bool,
) -> None:
    """Scoring along an ordering equals one full forward pass per factor."""
    model = tiny(head, dim, num_values, options, hidden_sizes=hidden_sizes, direct=direct)
    values = every_value(dim, num_values_of(model))
    for ordering in model.orderings(4, seed=2):
        reference = torch.zeros(len(values), dtype=torch.float64)
        observed = torch.zeros(len(values), dim, dtype=torch.bool)
        for variable in ordering.tolist():
            params = model(values, observed)
            reference += model.head.log_prob(params, values)[:, variable].detach()
            observed[:, variable] = True
        torch.testing.assert_close(model.log_prob(values, ordering[None]), reference)


@pytest.mark.parametrize(("head", "dim", "num_values", "options"), TINY, ids=TINY_IDS)
def test_the_outputs_never_read_a_missing_value(
    head: str, dim: int, num_values: int | None, options: dict
) -> None:
    """Every output is a function of the observed values only (and of which they are)."""
    model = tiny(head, dim, num_values, options)
    values = every_value(dim, num_values_of(model))
    generator = torch.Generator().manual_seed(1)
    for pattern in every_pattern(dim):
        observed = pattern.expand(len(values), dim)
        other = torch.randint(0, num_values_of(model), values.shape, generator=generator)
        changed = torch.where(observed, values, other)
        torch.testing.assert_close(model(values, observed), model(changed, observed))


def test_the_mixture_is_the_log_mean_exp_of_its_orderings() -> None:
    model = tiny("categorical", 3, 3, {"one_hot": True})
    values = every_value(3, 3)
    orderings = model.orderings(3, seed=1)
    each = torch.stack([model.log_prob(values, ordering[None]) for ordering in orderings])
    torch.testing.assert_close(model.log_prob(values, orderings), each.logsumexp(0) - math.log(3))
    # The default mixture is the model's own seeded orderings.
    torch.testing.assert_close(model.log_prob(values), model.log_prob(values, model.orderings()))


def test_examples_of_different_patterns_are_each_answered_under_their_own_pattern() -> None:
    model = tiny("bernoulli", 4, None, {})
    x = torch.tensor([[1, 0, 1, 1], [0, 1, 1, 0], [1, 1, 0, 0]])
    observed = torch.tensor(
        [[True, False, True, False], [False, True, True, True], [True] * 3 + [False]]
    )
    together = model.conditional_log_prob(x, observed)
    alone = torch.cat([model.conditional_log_prob(x[i : i + 1], observed[i]) for i in range(3)])
    torch.testing.assert_close(together, alone)


# -- completion -----------------------------------------------------------------------------


@pytest.mark.parametrize(("head", "dim", "num_values", "options"), TINY, ids=TINY_IDS)
def test_completion_frequencies_match_the_conditional(
    head: str, dim: int, num_values: int | None, options: dict
) -> None:
    model = tiny(head, dim, num_values, options)
    k = num_values_of(model)
    pattern = torch.zeros(dim, dtype=torch.bool)
    pattern[1] = True
    example = torch.full((dim,), k - 1)
    num_samples = 4000
    completed = model.complete(
        example.expand(num_samples, dim), pattern, generator=torch.Generator().manual_seed(0)
    )
    assert completed.dtype == torch.long and completed.shape == (num_samples, dim)
    assert bool((completed[:, pattern] == example[pattern]).all())
    candidates = every_value(dim, k)
    candidates = candidates[(candidates[:, pattern] == example[pattern]).all(1)]
    expected = model.conditional_log_prob(candidates, pattern).exp()
    torch.testing.assert_close(expected.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert frequencies_match(completed, candidates, expected)


@pytest.mark.parametrize(("head", "dim", "num_values", "options"), TINY[:2], ids=TINY_IDS[:2])
def test_sample_frequencies_match_the_joint_mixture(
    head: str, dim: int, num_values: int | None, options: dict
) -> None:
    model = tiny(head, dim, num_values, options)
    samples = model.sample(4000, generator=torch.Generator().manual_seed(1))
    candidates = every_value(dim, num_values_of(model))
    assert frequencies_match(samples, candidates, model.log_prob(candidates).exp())


def test_completion_is_seeded_and_ignores_the_missing_values() -> None:
    model = tiny("categorical", 3, 3, {"one_hot": True})
    x = torch.tensor([[2, 0, 1], [1, 1, 1], [0, 2, 2]])
    observed = torch.tensor([[True, False, False], [False, False, False], [True, True, False]])
    first = model.complete(x, observed, generator=torch.Generator().manual_seed(5))
    scrambled = torch.where(observed, x, torch.tensor(7))  # out of support, never read
    again = model.complete(scrambled, observed, generator=torch.Generator().manual_seed(5))
    assert torch.equal(first, again)
    assert bool((first[observed] == x[observed]).all())


# -- orderings and training -----------------------------------------------------------------


def test_the_training_loss_is_unbiased_for_the_mean_joint_nll_over_orderings() -> None:
    """With uniform orderings, E[loss] = mean over all D! orderings of -log p_pi(x)."""
    model = tiny("categorical", 3, 3, {"one_hot": True})
    x = torch.tensor([[2, 0, 1]])
    every = torch.tensor(list(itertools.permutations(range(3))))
    exact = float(torch.stack([-model.log_prob(x, o[None]) for o in every]).mean())
    draws = 40000
    with torch.no_grad():
        losses = torch.stack(
            [
                model.training_loss(x.expand(draws, 3), torch.Generator().manual_seed(seed))
                for seed in range(5)
            ]
        )
    # Five independent means of 40,000 draws: their mean within 4 standard errors.
    per_example = torch.stack(
        [
            model.training_loss(x.expand(1, 3), torch.Generator().manual_seed(seed)).detach()
            for seed in range(2000)
        ]
    )
    error = float(per_example.std()) / math.sqrt(5 * draws)
    assert abs(float(losses.mean()) - exact) < 4 * error


def test_draw_orderings_follow_the_config_and_queries_are_seeded() -> None:
    config = OrderlessConfig(
        "bernoulli",
        12,
        hidden_sizes=(4,),
        orderings="scans",
        ordering_options={"image_shape": (3, 4), "scan_share": 1.0},
    )
    model = OrderlessModel(config)
    drawn = model.draw_orderings(50, torch.Generator().manual_seed(0))
    assert torch.equal(drawn.sort(1).values, torch.arange(12).expand(50, 12))
    source = ConnectivitySampler(
        12, (), seed=7, orderings="scans", image_shape=(3, 4), scan_share=1.0
    )
    assert torch.equal(
        model.orderings(3, seed=7), torch.stack([source.draw_ordering() for _ in range(3)])
    )
    # Every ordering is a scan after a set: some scan orders come whole.
    scans = dk.masks.scan_orderings((3, 4))
    assert any(any(torch.equal(d, s) for s in scans) for d in drawn)
    uniform = OrderlessModel(OrderlessConfig("bernoulli", 12, hidden_sizes=(4,)))
    assert torch.equal(uniform.orderings(2, seed=3), uniform.orderings(2, seed=3))


def test_fit_lowers_the_nll_and_restores_the_best_weights() -> None:
    generator = torch.Generator().manual_seed(0)
    base = (torch.rand(1, 6, generator=generator) < 0.5).long()
    flips = torch.rand(400, 6, generator=generator) < 0.1
    data = base ^ flips.long()
    torch.manual_seed(0)
    model = OrderlessModel(OrderlessConfig("bernoulli", 6, hidden_sizes=(16,)))
    before = float(-model.log_prob(data[:100]).mean())
    config = TrainConfig(epochs=8, batch_size=50, lr=1e-2, patience=None, ema_decay=0.9)
    result = fit(model, data, data[:100], config)
    assert [r["epoch"] for r in result.history] == list(range(1, 9))
    assert result.best_val_nll == min(r["val_nll"] for r in result.history)
    assert result.best_val_nll < before - 1.0
    torch.testing.assert_close(
        float(-model.log_prob(data[:100]).mean()), result.best_val_nll, rtol=1e-5, atol=1e-5
    )
    assert result.history[-1]["stop_reason"] == "epochs"


def test_fit_stops_on_its_time_budget_and_on_patience() -> None:
    data = torch.randint(0, 2, (40, 3), generator=torch.Generator().manual_seed(0))
    model = OrderlessModel(OrderlessConfig("bernoulli", 3, hidden_sizes=(4,)))
    budget = TrainConfig(epochs=5, batch_size=10, time_budget_minutes=1e-9, device="cpu")
    result = fit(model, data, data, budget)
    assert len(result.history) == 1 and result.stop_reason == "time budget"
    # A learning rate of almost 0 never improves on the first epoch: patience ends it.
    stuck = TrainConfig(epochs=9, batch_size=10, lr=1e-12, patience=2, device="cpu")
    result = fit(model, data, data, stuck)
    assert result.stopped_early and result.stop_reason == "patience"
    assert len(result.history) <= 9 and result.best_epoch < len(result.history)


def test_fit_calls_its_callbacks() -> None:
    calls: list[str] = []

    class Record(Callback):
        def on_train_begin(self, state, num_batches):
            calls.append(f"begin {num_batches}")

        def on_batch_end(self, state, loss):
            calls.append("batch")

        def on_epoch_end(self, state, record):
            calls.append(f"epoch {record['epoch']}")

        def on_train_end(self, result):
            calls.append(f"end {result.best_epoch >= 1}")

    data = torch.randint(0, 2, (20, 3), generator=torch.Generator().manual_seed(0))
    model = OrderlessModel(OrderlessConfig("bernoulli", 3, hidden_sizes=(4,)))
    fit(model, data, data, TrainConfig(epochs=2, batch_size=10), callbacks=[Record()])
    epoch = ["batch", "batch"]
    assert calls == ["begin 2", *epoch, "epoch 1", *epoch, "epoch 2", "end True"]


def test_fit_refuses_settings_that_do_not_apply() -> None:
    model = OrderlessModel(OrderlessConfig("bernoulli", 3, hidden_sizes=(4,)))
    data = torch.randint(0, 2, (8, 3))
    with pytest.raises(ValueError, match="eval_masks 2"):
        fit(model, data, data, TrainConfig(epochs=1, eval_masks=2))
    with pytest.raises(ValueError, match="support"):
        fit(model, data + 1, data, TrainConfig(epochs=1))


# -- saving ---------------------------------------------------------------------------------


def test_save_and_load_give_the_same_model(tmp_path) -> None:
    model = tiny("logistic-mixture", 3, 3, {"num_components": 2, "one_hot": False}).float()
    path = tmp_path / "model.pt"
    dk.save_checkpoint(path, model)
    loaded = dk.load_checkpoint(path)
    assert isinstance(loaded, OrderlessModel) and loaded.config == model.config
    values = every_value(3, 3)
    torch.testing.assert_close(loaded.log_prob(values), model.log_prob(values))


def test_a_file_of_the_former_orderless_format_loads(tmp_path) -> None:
    """``save_orderless`` wrote {"format": "densitykit-orderless", "config", "state_dict"}."""
    model = tiny("bernoulli", 4, None, {}).float()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    path = tmp_path / "old.pt"
    torch.save(
        {"format": "densitykit-orderless", "config": model.config.to_dict(), "state_dict": state},
        path,
    )
    loaded = dk.load_checkpoint(path)
    values = every_value(4, 2)
    torch.testing.assert_close(loaded.log_prob(values), model.log_prob(values))


def test_load_refuses_unknown_families_and_code(tmp_path, capsys) -> None:
    model = tiny("bernoulli", 3, None, {})
    dk.save_checkpoint(tmp_path / "model.pt", model)
    data = torch.load(tmp_path / "model.pt", weights_only=True)
    data["family"] = "not-registered"
    torch.save(data, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="'not-registered' is not registered"):
        dk.load_checkpoint(tmp_path / "other.pt")

    class Trap:
        def __reduce__(self):
            return (print, ("ran",))

    (tmp_path / "trap.pt").write_bytes(pickle.dumps({"format": Trap()}))
    with pytest.raises(CheckpointError):
        dk.load_checkpoint(tmp_path / "trap.pt")
    torch.save({"format": Trap()}, tmp_path / "trap2.pt")
    with pytest.raises(CheckpointError, match="run code"):
        dk.load_checkpoint(tmp_path / "trap2.pt")
    assert "ran" not in capsys.readouterr().out


@pytest.mark.parametrize("hidden_sizes", [[300_000], [10**12]])
def test_load_checks_the_config_against_the_weights_before_building(tmp_path, hidden_sizes) -> None:
    """A 3 kB file whose config asks for a huge model is refused with the sizes, unbuilt."""
    path = tmp_path / "model.pt"
    dk.save_checkpoint(path, OrderlessModel(OrderlessConfig("bernoulli", dim=4, hidden_sizes=(8,))))
    data = torch.load(path, weights_only=True)
    data["model_config"]["hidden_sizes"] = hidden_sizes
    torch.save(data, path)
    assert path.stat().st_size < 10_000
    with pytest.raises(CheckpointError, match=r"describes a model of [\d,]+ weights, but the file"):
        dk.load_checkpoint(path)


# -- bad input ------------------------------------------------------------------------------


def test_bad_queries_are_refused_with_what_was_expected() -> None:
    model = tiny("categorical", 3, 3, {"one_hot": True})
    x = torch.tensor([[2, 0, 1]])
    with pytest.raises(ValueError, match=r"shape of x"):
        model.conditional_log_prob(x, torch.tensor([True, False]))
    with pytest.raises(TypeError, match="torch.bool"):
        model.conditional_log_prob(x, torch.tensor([1, 0, 0]))
    with pytest.raises(ValueError, match="missing variable"):
        model.conditional_log_prob(x, torch.tensor([True, True, True]))
    with pytest.raises(ValueError, match="observed variable"):
        model.marginal_log_prob(x, torch.tensor([False, False, False]))
    with pytest.raises(ValueError, match="support"):
        model.log_prob(torch.tensor([[3, 0, 1]]))
    with pytest.raises(ValueError, match=r"shape \(B, D\)"):
        model.log_prob(torch.tensor([2, 0, 1]))
    with pytest.raises(ValueError, match="permutation"):
        model.log_prob(x, torch.tensor([[0, 0, 1]]))
    with pytest.raises(ValueError, match=r"shape \(K, 3\)"):
        model.log_prob(x, torch.tensor([[0, 1]]))


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one hidden layer"):
        OrderlessConfig("bernoulli", 3, hidden_sizes=())
    with pytest.raises(ValueError, match="params_per_variable=0"):
        OrderlessModel(OrderlessConfig("histogram", 3, 4, hidden_sizes=(4,)))
    with pytest.raises(ValueError, match="orderings must be one of"):
        OrderlessConfig("bernoulli", 4, hidden_sizes=(4,), orderings="spirals")
    with pytest.raises(ValueError, match="image_shape"):
        OrderlessConfig("bernoulli", 4, hidden_sizes=(4,), orderings="scans")
    with pytest.raises(ValueError, match="unknown orderless config keys"):
        OrderlessConfig.from_dict({"head": "bernoulli", "dim": 3, "width": 4})
    config = OrderlessConfig("bernoulli", 4, hidden_sizes=(4,), orderings="regions",
                             ordering_options={"image_shape": (2, 2)})  # fmt: skip
    assert OrderlessConfig.from_dict(config.to_dict()) == config


def test_orderings_beyond_memory_are_refused_with_the_size() -> None:
    with pytest.raises(dk.errors.ResourceError, match="num_orderings=1,000,000,000 orderings"):
        OrderlessConfig("bernoulli", dim=4, hidden_sizes=(8,), num_orderings=10**9)
    model = OrderlessModel(OrderlessConfig("bernoulli", dim=4, hidden_sizes=(8,)))
    for draw in (model.orderings, model.draw_orderings):
        with pytest.raises(dk.errors.ResourceError, match="1,000,000,000 orderings of 4 variables"):
            draw(10**9)
    with pytest.raises(ValueError, match=r"ordering_seed must be an integer in 0\.\."):
        OrderlessConfig("bernoulli", dim=4, hidden_sizes=(8,), ordering_seed=2**70)
