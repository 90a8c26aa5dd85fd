"""Mask builders: degrees, orderings, determinism, diagnostics."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch
from helpers import run_cli
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


def region_kind(region: torch.Tensor, shape: tuple[int, int]) -> str | None:
    """``"box"``, ``"outside"`` (of a box) or ``"half-plane"``, or ``None`` if none fits."""

    def is_box(cells: torch.Tensor) -> bool:
        rows, cols = torch.nonzero(cells, as_tuple=True)
        if rows.numel() == 0:
            return False
        box = torch.zeros_like(cells)
        box[int(rows.min()) : int(rows.max()) + 1, int(cols.min()) : int(cols.max()) + 1] = True
        return torch.equal(box, cells)

    def touches_an_end(line: torch.Tensor) -> bool:
        # A line of a half-plane's pixels is empty, full, a prefix or a suffix of it.
        count = int(line.sum())
        return bool(line[:count].all()) or bool(line[line.numel() - count :].all())

    cells = region.view(shape)
    if is_box(cells):
        return "box"
    if is_box(~cells):
        return "outside"
    lines = [*cells, *cells.t()]
    if all(touches_an_end(line) for line in lines):
        return "half-plane"
    return None


@given(seed=st.integers(0, 2**31 - 1), height=st.integers(1, 9), width=st.integers(1, 9))
def test_region_first_orderings_put_a_box_its_outside_or_a_half_plane_first(
    seed: int, height: int, width: int
) -> None:
    shape = (height, width)
    region = dk.masks.random_region(shape, torch.Generator().manual_seed(seed))
    assert region.shape == (height * width,) and region.dtype == torch.bool
    assert region_kind(region, shape) is not None
    ordering = dk.masks.region_first_ordering(shape, torch.Generator().manual_seed(seed))
    assert sorted(ordering.tolist()) == list(range(height * width))
    count = int(region.sum())
    assert bool(region[ordering[:count]].all()) and not bool(region[ordering[count:]].any())


def test_random_regions_are_of_every_kind_and_half_planes_of_every_size() -> None:
    shape = (28, 28)
    generator = torch.Generator().manual_seed(0)
    kinds, half_plane_shares = {}, []
    for _ in range(400):
        region = dk.masks.random_region(shape, generator)
        kind = region_kind(region, shape)
        kinds[kind] = kinds.get(kind, 0) + 1
        if kind == "half-plane":
            half_plane_shares.append(float(region.float().mean()))
    # Chances 1/2, 1/4, 1/4 (a half-plane touching two sides can also be a box).
    assert set(kinds) == {"box", "outside", "half-plane"}
    assert 150 <= kinds["half-plane"] <= 230 and kinds["outside"] >= 70
    assert 0.05 <= min(half_plane_shares) < 0.15 and 0.85 < max(half_plane_shares) <= 0.95


def written_scan(code: int, shape: tuple[int, int]) -> list[int]:
    """Scan ``code`` written out pixel by pixel: bit 2 columns first, bit 1 rows
    backwards, bit 0 columns backwards."""
    height, width = shape
    rows = range(height - 1, -1, -1) if code & 2 else range(height)
    cols = range(width - 1, -1, -1) if code & 1 else range(width)
    if code & 4:
        return [row * width + col for col in cols for row in rows]
    return [row * width + col for row in rows for col in cols]


def scan_index(ordering: list[int], shape: tuple[int, int]) -> tuple[int, int] | None:
    """``(code, k)`` if ``ordering`` is the first ``k`` variables and then the rest, each
    in the order of scan ``code``, else ``None``."""
    for code in range(8):
        place = {pixel: index for index, pixel in enumerate(written_scan(code, shape))}
        for k in range(len(ordering) + 1):
            first = [place[v] for v in ordering[:k]]
            rest = [place[v] for v in ordering[k:]]
            if first == sorted(first) and rest == sorted(rest):
                return code, k
    return None


@given(height=st.integers(1, 6), width=st.integers(1, 6))
def test_scan_orderings_read_the_image_by_rows_or_columns_either_way(
    height: int, width: int
) -> None:
    scans = dk.masks.scan_orderings((height, width))
    assert scans.shape == (8, height * width) and scans.dtype == torch.long
    for code, scan in enumerate(scans.tolist()):
        assert scan == written_scan(code, (height, width))
    assert scans[0].tolist() == list(range(height * width))  # the raster (natural) order
    if height > 1 and width > 1:
        assert len({tuple(scan) for scan in scans.tolist()}) == 8


@given(seed=st.integers(0, 2**31 - 1), height=st.integers(1, 7), width=st.integers(1, 7))
def test_scan_first_orderings_put_a_set_first_and_keep_one_scan_order(
    seed: int, height: int, width: int
) -> None:
    ordering = dk.masks.scan_first_ordering((height, width), torch.Generator().manual_seed(seed))
    assert sorted(ordering.tolist()) == list(range(height * width))
    assert scan_index(ordering.tolist(), (height, width)) is not None


def test_scan_first_orderings_draw_every_scan_and_every_kind_of_first_set() -> None:
    shape = (6, 7)
    generator = torch.Generator().manual_seed(0)
    codes, plain, first_sizes = [0] * 8, 0, []
    scans = dk.masks.scan_orderings(shape).tolist()
    for _ in range(800):
        ordering = dk.masks.scan_first_ordering(shape, generator).tolist()
        if ordering in scans:
            plain += 1
            codes[scans.index(ordering)] += 1
        else:
            _, k = scan_index(ordering, shape)
            first_sizes.append(k)
    # Chance 1/2 a plain scan, each of the 8 equally likely; otherwise a set first.
    assert 340 <= plain <= 460 and min(codes) >= 25
    assert min(first_sizes) < 5 and max(first_sizes) > 37  # sets of every size


@pytest.mark.parametrize(
    ("orderings", "share", "first"),
    [
        ("regions", "region_share", dk.masks.region_first_ordering),
        ("scans", "scan_share", dk.masks.scan_first_ordering),
    ],
)
def test_an_image_sampler_draws_at_its_share_resumes_and_reseeds(
    orderings: str, share: str, first: object
) -> None:
    shape, dim = (4, 5), 20
    source = dk.masks.ConnectivitySampler(
        dim, [7], seed=3, orderings=orderings, image_shape="4x5", **{share: 0.5}
    )
    assert source.image_shape == shape and f"orderings={orderings!r}" in repr(source)
    twin = torch.Generator().manual_seed(3)  # the same draws, step by step
    kinds = set()
    for _ in range(30):
        drawn = source.draw()
        if float(torch.rand((), generator=twin, dtype=torch.float64)) < 0.5:
            expected, kind = first(shape, twin), "image"
        else:
            expected, kind = torch.randperm(dim, generator=twin), "uniform"
        kinds.add(kind)
        assert torch.equal(drawn.ordering, expected)
        assert torch.equal(drawn.hidden_degrees[0], hidden_degrees(dim, [7], generator=twin)[0])
    assert kinds == {"image", "uniform"}
    state = source.state_dict()
    drawn = [source.draw() for _ in range(3)]
    source.load_state_dict(state)
    assert all(torch.equal(source.draw().ordering, c.ordering) for c in drawn)
    # A reseeded source draws what a new one of the same options and seed draws.
    again = dk.masks.ConnectivitySampler(
        dim, [7], seed=9, orderings=orderings, image_shape=[4, 5], **{share: 0.5}
    )
    reseeded = source.reseeded(9)
    assert (reseeded.orderings, reseeded.image_shape, getattr(reseeded, share)) == (
        orderings,
        shape,
        0.5,
    )
    assert all(torch.equal(reseeded.draw().ordering, again.draw().ordering) for _ in range(5))


@pytest.mark.parametrize(
    ("orderings", "share"), [("regions", "region_share"), ("scans", "scan_share")]
)
def test_an_image_share_of_zero_draws_uniform_orderings(orderings: str, share: str) -> None:
    source = dk.masks.ConnectivitySampler(
        16, [5], seed=0, orderings=orderings, image_shape=(4, 4), **{share: 0.0}
    )
    twin = torch.Generator().manual_seed(0)
    for _ in range(10):
        drawn = source.draw()
        assert float(torch.rand((), generator=twin, dtype=torch.float64)) >= 0.0
        assert torch.equal(drawn.ordering, torch.randperm(16, generator=twin))
        hidden_degrees(16, [5], generator=twin)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"orderings": "spiral"},
            "orderings must be one of 'uniform', 'regions', 'scans', got 'spiral'",
        ),
        ({"orderings": "scans"}, r"orderings='scans' needs image_shape: .* got None"),
        ({"orderings": "regions"}, r"needs image_shape: .* H \* W = D = 12, .* got None"),
        ({"orderings": "regions", "image_shape": [3, 5]}, r"got \[3, 5\]"),
        ({"orderings": "regions", "image_shape": "3 by 4"}, "got '3 by 4'"),
        ({"image_shape": [3, 4]}, "image_shape is for orderings 'regions' or 'scans'; these"),
        (
            {"orderings": "regions", "image_shape": [3, 4], "region_share": 1.5},
            r"region_share must be a number in \[0, 1\], got 1.5",
        ),
        (
            {"orderings": "regions", "image_shape": [3, 4], "region_share": True},
            "region_share must be a number",
        ),
        (
            {"orderings": "scans", "image_shape": [3, 4], "scan_share": -0.1},
            r"scan_share must be a number in \[0, 1\], got -0.1",
        ),
        (
            {"orderings": "regions", "image_shape": [3, 4], "scan_share": 0.5},
            "scan_share is for orderings='scans'; these orderings are 'regions'",
        ),
        (
            {"region_share": 0.5},
            "region_share is for orderings='regions'; these orderings are 'uniform'",
        ),
    ],
)
def test_a_sampler_refuses_bad_ordering_options(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dk.masks.ConnectivitySampler(12, [4], **options)


@pytest.mark.parametrize(
    "options",
    [
        {"orderings": "regions", "image_shape": [4, 4], "region_share": 1.0},
        {"orderings": "scans", "image_shape": "4x4", "scan_share": 0.75},
    ],
    ids=["regions", "scans"],
)
def test_any_order_on_images_evaluates_and_is_asked_in_the_same_distribution(
    options: dict,
) -> None:
    built = dk.masks.create("any-order", dim=16, hidden_sizes=[10], num_masks=3, seed=5, **options)
    again = dk.masks.create("any-order", dim=16, hidden_sizes=[10], num_masks=3, seed=5, **options)
    assert built.source.orderings == options["orderings"]
    stack_source = built.source.reseeded(5)
    for conn, twin in zip(built, again):
        assert torch.equal(conn.ordering, twin.ordering)
        assert torch.equal(conn.ordering, stack_source.draw().ordering)
    model = dk.create_model(
        "bernoulli", 16, hidden_sizes=(10,), masks="any-order", num_masks=3, mask_options=options
    )
    drawn = model.draw_orderings(4, seed=2)
    fresh = model.connectivity_source.reseeded(2)
    assert all(torch.equal(c.ordering, fresh.draw().ordering) for c in drawn)


def test_a_random_region_refuses_a_bad_image_shape() -> None:
    assert dk.masks.random_region("2x3", torch.Generator().manual_seed(0)).shape == (6,)
    for bad in ([4], [0, 3], (2, 2.5), "four"):
        with pytest.raises(ValueError, match=r"image_shape must be two positive sizes \(H, W\)"):
            dk.masks.random_region(bad)


@given(
    dim=st.integers(1, 8),
    hidden=st.lists(st.integers(1, 7), max_size=3),
    direct=st.booleans(),
    data=st.data(),
)
def test_missing_per_output_counts_what_the_mask_product_misses(
    dim: int, hidden: list[int], direct: bool, data: st.DataObject
) -> None:
    """The degree-only count (no D x D matrix) equals the mask product's."""
    ordering = data.draw(st.permutations(range(dim)))
    top = max(dim - 1, 1)
    degrees = [data.draw(st.lists(st.integers(1, top), min_size=h, max_size=h)) for h in hidden]
    conn = Connectivity.from_ordering(ordering, degrees)
    expected = dk.masks.missing_connections(conn, direct=direct).sum(-1)
    assert torch.equal(dk.masks.missing_per_output(conn, direct=direct), expected)


@pytest.mark.slow
def test_fitting_wide_data_checks_connectivity_in_bounded_memory(tmp_path) -> None:
    """30,000 variables: a (D, D) reachability matrix alone would take about 1 GB more."""
    import numpy as np

    np.save(tmp_path / "wide.npy", np.random.default_rng(0).integers(0, 2, (10, 30_000), np.uint8))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    outcome = run_cli(
        [
            "fit",
            "--data",
            "wide.npy",
            "--hidden-sizes",
            "16",
            "--epochs",
            "1",
            "--quiet",
            "--out",
            "run",
        ],
        cwd=tmp_path,
        env=env,
    )
    assert outcome.returncode == 0, outcome.stderr
    # Importing torch and densitykit alone takes about 700 MB here.
    assert outcome.max_rss_mb < 1200, outcome.max_rss_mb
