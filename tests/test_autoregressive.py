"""Proofs of the autoregressive property: Jacobian zeros and mask-product reachability."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import ModelSpec, model_specs

import densitykit as dk
from densitykit.masks import Connectivity, reachability


def backbone_jacobian(
    model: dk.AutoregressiveModel, mask: int, points: torch.Tensor
) -> torch.Tensor:
    """d params[b, d, p] / d inputs[b', j] for a batch of encoded input points."""
    backbone = model.backbone
    backbone.set_mask(mask)
    return torch.autograd.functional.jacobian(lambda inputs: backbone(inputs), points)


def allowed_inputs(conn: Connectivity, input_width: int) -> torch.Tensor:
    """(D, D*W) bool: output variable d may depend on input unit j."""
    degrees = conn.input_degrees
    return degrees[:, None] > degrees.repeat_interleave(input_width)[None, :]


@settings(max_examples=60)
@pytest.mark.slow
@given(spec=model_specs(), data=st.data())
def test_jacobian_is_zero_where_the_ordering_forbids(spec: ModelSpec, data: st.DataObject) -> None:
    model = spec.build().double()
    backbone = model.backbone
    batch = 3
    width = backbone.dim * backbone.input_width
    for mask in range(backbone.num_masks):
        allowed = allowed_inputs(backbone.connectivity(mask), backbone.input_width)
        for point in range(3):  # several points: ReLU can hide an edge at one of them
            seed = data.draw(st.integers(0, 2**31 - 1), label=f"point seed {point}")
            points = torch.randn(
                batch, width, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)
            )
            jac = backbone_jacobian(model, mask, points)  # (B, D, P, B, D*W)
            same = torch.stack([jac[b, :, :, b, :] for b in range(batch)])  # (B, D, P, D*W)
            forbidden = ~allowed[None, :, None, :].expand_as(same)
            assert torch.count_nonzero(same[forbidden]) == 0
            # No example's output depends on another example of the batch.
            for b in range(batch):
                others = [c for c in range(batch) if c != b]
                assert torch.count_nonzero(jac[b][:, :, others, :]) == 0


@settings(max_examples=40)
@pytest.mark.slow
@given(spec=model_specs(max_dim=8), data=st.data())
def test_log_prob_gradient_respects_ordering(spec: ModelSpec, data: st.DataObject) -> None:
    """End to end: each variable's log-probability ignores later and own inputs."""
    model = spec.build().double()
    head = model.head
    x = data.draw(
        st.lists(st.integers(0, spec.num_values - 1), min_size=spec.dim, max_size=spec.dim)
    )
    x = torch.tensor([x])
    for mask in range(model.num_masks):
        conn = model.backbone.connectivity(mask)
        model.backbone.set_mask(mask)
        encoded = head.encode(x, torch.float64).requires_grad_(True)
        per_variable = head.log_prob(model.backbone(encoded), x)[0]  # (D,)
        allowed = allowed_inputs(conn, head.input_width)
        for variable in range(spec.dim):
            (grad,) = torch.autograd.grad(per_variable[variable], encoded, retain_graph=True)
            assert torch.count_nonzero(grad[0][~allowed[variable]]) == 0


@settings(max_examples=40)
@given(spec=model_specs(max_dim=10, min_width=1, max_width=12))
def test_reachability_never_exceeds_the_ordering(spec: ModelSpec) -> None:
    model = spec.build()
    for mask in range(model.num_masks):
        conn = model.backbone.connectivity(mask)
        reach = reachability(conn, direct=model.backbone.direct_connections)
        assert not bool((reach & ~conn.direct_mask()).any())


@settings(max_examples=40)
@pytest.mark.slow
@given(
    dim=st.integers(1, 12),
    layers=st.integers(0, 3),
    masks=st.sampled_from(["natural", "random", "multi-ordering"]),
    seed=st.integers(0, 1000),
    extra=st.integers(0, 8),
)
def test_wide_layers_reach_exactly_the_predecessors(
    dim: int, layers: int, masks: str, seed: int, extra: int
) -> None:
    """With evenly spread degrees and width >= D-1, no allowed edge is missing."""
    hidden = tuple([max(dim - 1, 1) + extra] * layers)
    model = dk.create_model(
        "categorical",
        dim,
        3,
        hidden_sizes=hidden,
        masks=masks,
        num_masks=2,
        seed=seed,
        activation="tanh",
        mask_options={"spread": "even"},
    ).double()
    backbone = model.backbone
    for mask in range(backbone.num_masks):
        conn = backbone.connectivity(mask)
        assert torch.equal(reachability(conn), conn.direct_mask())
        # And the network really uses each edge: tanh has no dead zones, so the
        # Jacobian is non-zero at a random point exactly where the ordering allows.
        points = torch.randn(
            2,
            backbone.dim * backbone.input_width,
            dtype=torch.float64,
            generator=torch.Generator().manual_seed(seed),
        )
        jac = backbone_jacobian(model, mask, points)[0, :, :, 0, :]  # (D, P, D*W)
        depends = jac.abs().amax(dim=1).view(dim, dim, -1).amax(-1) > 0
        assert torch.equal(depends, conn.direct_mask())


def test_random_degrees_can_miss_edges_and_the_diagnostic_says_so() -> None:
    conn = dk.masks.create("natural", dim=6, hidden_sizes=[2])[0]
    missing = dk.masks.missing_connections(conn)
    assert bool(missing.any())
    problems = dk.masks.check_connectivity([conn], warn=False)
    assert problems and "layer 0 has 2 units" in problems[0]
