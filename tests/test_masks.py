"""Mask builders: degrees, orderings, determinism, diagnostics."""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import mask_options

import densitykit as dk
from densitykit.masks import Connectivity, ConnectivityWarning, hidden_degrees


@pytest.mark.parametrize("name", dk.masks.names())
@given(
    dim=st.integers(1, 12),
    hidden=st.lists(st.integers(1, 20), max_size=3),
    num_masks=st.integers(1, 4),
    seed=st.integers(0, 999),
    data=st.data(),
)
def test_every_builder_gives_valid_degrees(name, dim, hidden, num_masks, seed, data) -> None:
    options = mask_options(name, dim, data.draw)
    conns = dk.masks.create(
        name, dim=dim, hidden_sizes=hidden, num_masks=num_masks, seed=seed, **options
    )
    again = dk.masks.create(
        name, dim=dim, hidden_sizes=hidden, num_masks=num_masks, seed=seed, **options
    )
    assert len(conns) == num_masks
    for conn, twin in zip(conns, again):
        assert isinstance(conn, Connectivity)
        assert torch.equal(torch.sort(conn.input_degrees).values, torch.arange(1, dim + 1))
        assert torch.equal(conn.input_degrees, twin.input_degrees)  # seeded
        low = 1
        for size, degrees in zip(hidden, conn.hidden_degrees):
            assert degrees.numel() == size
            # no useless unit: at least the previous minimum, at most D - 1
            assert int(degrees.min()) >= low and int(degrees.max()) <= max(dim - 1, 1)
            low = int(degrees.min())
        if "ordering" in options:
            assert conn.ordering.tolist() == list(options["ordering"])
        if name == "natural":
            assert conn.ordering.tolist() == list(range(dim))


def test_multi_ordering_masks_differ_in_ordering_and_connectivity() -> None:
    conns = dk.masks.create("multi-ordering", dim=10, hidden_sizes=[30], num_masks=5, seed=0)
    assert len({tuple(c.ordering.tolist()) for c in conns}) == 5
    assert len({tuple(c.hidden_degrees[0].tolist()) for c in conns}) == 5


def test_random_is_one_ordering_seeded() -> None:
    a = dk.masks.create("random", dim=8, hidden_sizes=[9], num_masks=3, seed=1)
    b = dk.masks.create("random", dim=8, hidden_sizes=[9], num_masks=1, seed=2)
    assert len({tuple(c.ordering.tolist()) for c in a}) == 1
    assert a[0].ordering.tolist() != b[0].ordering.tolist()


def test_even_spread_is_deterministic_and_covers_every_degree() -> None:
    layers = hidden_degrees(5, [8, 4], spread="even")
    assert layers[0].tolist() == [1, 1, 2, 2, 3, 3, 4, 4]
    assert layers[1].tolist() == [1, 2, 3, 4]


def test_single_variable_depends_on_nothing() -> None:
    conn = dk.masks.create("natural", dim=1, hidden_sizes=[4, 4])[0]
    masks = conn.layer_masks()
    assert not bool(masks[-1].any())  # the output sees no hidden unit
    model = dk.create_model("categorical", 1, 3, hidden_sizes=(4, 4), direct_connections=True)
    x = torch.tensor([[0], [1], [2]])
    assert torch.allclose(model.log_prob(x).exp().sum(), torch.tensor(1.0))


def test_narrow_layer_warns_unless_direct_connections_fill_the_gaps() -> None:
    with pytest.warns(ConnectivityWarning, match="layer 0 has 3 units but 9 degrees are needed"):
        dk.create_model("bernoulli", 10, hidden_sizes=(3,))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConnectivityWarning)
        dk.create_model("bernoulli", 10, hidden_sizes=(3,), direct_connections=True)
        dk.masks.create("natural", dim=10, hidden_sizes=[3])  # builders only choose degrees


def test_explicit_ordering_validates() -> None:
    with pytest.raises(ValueError, match="permutation of 0..2"):
        dk.masks.create("ordering", dim=3, hidden_sizes=[4], ordering=[0, 0, 1])
    with pytest.raises(ValueError, match="needs ordering"):
        dk.masks.create("ordering", dim=3)


@pytest.mark.parametrize(
    "bad", [{"dim": 0}, {"dim": 2.5}, {"hidden_sizes": [0]}, {"num_masks": 0}, {"spread": "wide"}]
)
def test_bad_builder_arguments(bad) -> None:
    options = {"dim": 3, "hidden_sizes": [4], **bad}
    # A value of the wrong type is a TypeError, one out of range a ValueError (as torch).
    with pytest.raises(TypeError if bad.get("dim") == 2.5 else ValueError):
        dk.masks.create("natural", **options)


def test_reachability_report_example() -> None:
    conn = Connectivity.from_ordering([1, 0, 2], [[1, 2]])
    reach = dk.masks.reachability(conn)
    # variable 1 comes first: nothing; variable 0 sees 1; variable 2 sees both.
    assert reach.int().tolist() == [[0, 1, 0], [0, 0, 0], [1, 1, 0]]


def test_masked_linear_follows_every_change_of_its_masks() -> None:
    """The layer caches its float mask; each way of changing the masks must show."""
    from densitykit.layers import MaskedLinear

    torch.manual_seed(0)
    masks = torch.stack([torch.ones(2, 3), torch.tensor([[1.0, 0, 0], [0, 1, 0]])]).bool()
    layer = MaskedLinear(3, 2, masks=masks)
    x = torch.randn(4, 3)

    def expected() -> torch.Tensor:
        weight = layer.weight * layer.mask_stack[layer.mask_index].to(layer.weight.dtype)
        return x.to(layer.weight.dtype) @ weight.t() + layer.bias

    assert torch.equal(layer(x), expected())
    layer.mask_index = 1  # switching the active mask
    assert torch.equal(layer(x), expected())
    layer.mask_stack[1, 0, 0] = False  # an in-place edit
    assert torch.equal(layer(x), expected())
    # Output 0 of mask 1 now reads no input: it is its bias alone.
    assert torch.equal(layer(x)[:, 0], layer.bias[0].expand(4))
    layer.set_masks(torch.ones(2, 2, 3))  # a replacement
    assert torch.equal(layer(x), expected())
    layer.double()  # a dtype change
    assert layer(x.double()).dtype == torch.float64
    assert torch.equal(layer(x.double()), expected())


# -- connectivities on demand ---------------------------------------------------------------


@given(
    dim=st.integers(1, 12),
    hidden=st.lists(st.integers(1, 20), max_size=3),
    seed=st.integers(0, 999),
    spread=st.sampled_from(["random", "even"]),
)
def test_the_sampler_draws_valid_seeded_connectivities(dim, hidden, seed, spread) -> None:
    source = dk.masks.ConnectivitySampler(dim, hidden, seed=seed, spread=spread)
    twin = dk.masks.ConnectivitySampler(dim, hidden, seed=seed, spread=spread)
    for _ in range(3):
        conn, again = source.draw(), twin.draw()
        assert torch.equal(torch.sort(conn.input_degrees).values, torch.arange(1, dim + 1))
        assert conn.hidden_sizes == tuple(hidden)
        assert torch.equal(conn.input_degrees, again.input_degrees)
        for degrees, same in zip(conn.hidden_degrees, again.hidden_degrees):
            assert torch.equal(degrees, same)
            assert int(degrees.min()) >= 1 and int(degrees.max()) <= max(dim - 1, 1)


def test_the_sampler_state_round_trips_and_draws_vary() -> None:
    source = dk.masks.ConnectivitySampler(9, [16, 16], seed=3)
    source.draw()
    state = source.state_dict()
    later = [source.draw() for _ in range(4)]
    assert len({tuple(c.ordering.tolist()) for c in later}) > 1  # fresh orderings
    fresh = dk.masks.ConnectivitySampler(9, [16, 16], seed=99)
    fresh.load_state_dict(state)
    for conn in later:
        again = fresh.draw()
        assert torch.equal(conn.input_degrees, again.input_degrees)
        assert all(torch.equal(a, b) for a, b in zip(conn.hidden_degrees, again.hidden_degrees))


def test_the_sampler_refuses_bad_options() -> None:
    with pytest.raises(ValueError, match="spread"):
        dk.masks.ConnectivitySampler(3, [4], spread="wide")
    with pytest.raises(ValueError, match="dim must be a positive integer, got 0"):
        dk.masks.ConnectivitySampler(0, [4])


def test_any_order_evaluates_on_the_multi_ordering_stack_and_trains_on_a_source() -> None:
    built = dk.masks.create("any-order", dim=6, hidden_sizes=[10], num_masks=3, seed=5)
    stack = dk.masks.create("multi-ordering", dim=6, hidden_sizes=[10], num_masks=3, seed=5)
    assert isinstance(built, dk.masks.OnDemandConnectivities) and len(built) == 3
    for conn, twin in zip(built, stack):
        assert torch.equal(conn.input_degrees, twin.input_degrees)
    assert isinstance(built.source, dk.masks.ConnectivitySampler)
    again = dk.masks.create("any-order", dim=6, hidden_sizes=[10], num_masks=3, seed=5)
    assert torch.equal(built.source.draw().input_degrees, again.source.draw().input_degrees)


@given(
    ordering=st.permutations(list(range(7))),
    observed=st.lists(st.booleans(), min_size=7, max_size=7),
)
def test_observed_first_moves_the_observed_variables_to_the_front(ordering, observed) -> None:
    conn = Connectivity.from_ordering(ordering, hidden_degrees(7, [5], spread="even"))
    pattern = torch.tensor(observed)
    moved = dk.masks.observed_first(conn, pattern)
    count = int(pattern.sum())
    assert bool(pattern[moved.ordering[:count]].all())
    assert not bool(pattern[moved.ordering[count:]].any())
    # Each group keeps its relative order; the hidden degrees are kept.
    assert moved.ordering[:count].tolist() == [v for v in ordering if observed[v]]
    assert moved.ordering[count:].tolist() == [v for v in ordering if not observed[v]]
    assert torch.equal(moved.hidden_degrees[0], conn.hidden_degrees[0])


def test_observed_first_refuses_a_bad_pattern() -> None:
    conn = Connectivity.from_ordering([0, 1, 2], [[1, 2]])
    with pytest.raises(TypeError, match="bool"):
        dk.masks.observed_first(conn, torch.tensor([1, 0, 1]))
    with pytest.raises(ValueError, match=r"shape \(3,\), got \(2,\)"):
        dk.masks.observed_first(conn, torch.tensor([True, False]))
