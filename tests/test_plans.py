"""The fast sampler's plans: derived from degrees, cached without growing."""

from __future__ import annotations

import pytest
import torch

import densitykit as dk
from densitykit import plans
from densitykit.masks import Connectivity, ConnectivitySampler


def model(direct: bool = True) -> dk.AutoregressiveModel:
    return dk.create_model("categorical", 6, 3, hidden_sizes=(9, 5), direct_connections=direct)


def test_one_connectivity_plan_is_kept_per_backbone() -> None:
    backbone = model().backbone
    source = ConnectivitySampler(6, (9, 5), seed=0)
    for _ in range(20):
        last = source.draw()
        plans.connectivity_plan(backbone, last, 3)
    kept, _, plan = plans._CONNECTIVITY_PLANS[backbone]  # one entry: the last connectivity
    assert kept is last
    # Equal degrees in a new object find the kept plan; another first step builds anew.
    copy = Connectivity(last.input_degrees.clone(), tuple(h.clone() for h in last.hidden_degrees))
    assert plans.connectivity_plan(backbone, copy, 3) is plan
    assert plans.connectivity_plan(backbone, copy, 2) is not plan
    assert plans.connectivity_plan(backbone, source.draw(), 2) is not plan


@pytest.mark.parametrize("start", [0, 1, 3, 5])
def test_a_plan_from_a_first_step_computes_every_unit_once(start: int) -> None:
    backbone = model().backbone
    conn = ConnectivitySampler(6, (9, 5), seed=1).draw()
    plan = plans.connectivity_plan(backbone, conn, start)
    assert plan.exact and plan.consistent and plan.start == start
    assert [step.variable for step in plan.steps] == conn.ordering[start:].tolist()
    for layer, degrees in enumerate(conn.hidden_degrees):
        # Units of degree < start come from the prefix product, the others from the steps.
        before = sum(units for index, units, _, _ in plan.prefix if index == layer)
        during = sum(
            end - begin
            for step in plan.steps
            for index, begin, end, _, _ in step.hidden
            if index == layer
        )
        assert before == int((degrees < start).sum())
        assert during == int((degrees >= start).sum())


def test_the_prefix_mask_is_the_degree_rule_among_sorted_units() -> None:
    backbone = model(direct=False).backbone
    conn = ConnectivitySampler(6, (9, 5), seed=2).draw()
    plan = plans.connectivity_plan(backbone, conn, 4)
    layer_masks = conn.layer_masks(backbone.input_width, backbone.params_per_variable)
    below = plan.input_order
    for layer, units, rows, mask in plan.prefix:
        order = plan.unit_orders[layer]
        expected = layer_masks[layer][order][:, below][:units, :rows]
        assert torch.equal(mask.cpu(), expected)
        below = order


def test_bad_plan_arguments() -> None:
    backbone = model().backbone
    with pytest.raises(ValueError, match="mask"):
        plans.mask_plan(backbone, 1)
    with pytest.raises(ValueError, match="start"):
        plans.connectivity_plan(backbone, backbone.connectivity(), 7)
    with pytest.raises(TypeError, match="Connectivity"):
        plans.connectivity_plan(backbone, backbone.connectivity().ordering, 0)
