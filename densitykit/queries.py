r"""Conditional queries on a backbone and a head: any subset of variables observed.

For an ordering that puts the observed variables $o$ first, the chain rule splits
into the two queries:

$$\log p(x) = \underbrace{\sum_{t \le |o|} \log p(x_{\pi_t} \mid x_{\pi_{<t}})}_{\log p(x_o)}
+ \underbrace{\sum_{t > |o|} \log p(x_{\pi_t} \mid x_{\pi_{<t}})}_{\log p(x_m \mid x_o)}$$

so one forward pass under that ordering gives both the marginal of the observed
values and the conditional of the missing ones, exactly, for that ordering's model.
The connectivity is built per query with
[`observed_first`][densitykit.masks.observed_first] from each of the given *base*
connectivities (by default the backbone's own, the evaluation mixture): the observed
variables move to the front, each group keeps its relative order, the hidden degrees
are kept. A model trained over all orderings (``any-order``) has learnt these
conditionals; a model trained in one ordering answers them too, but exactly only
when the observed variables already come first in it.

With $K$ base connectivities the answers are uniform mixtures:

* marginal: $\log \frac1K \sum_k p_k(x_o)$, a distribution over $x_o$ (the
  marginal of the mixture of the $K$ observed-first models);
* conditional: $\log \frac1K \sum_k p_k(x_m \mid x_o)$, a distribution over $x_m$
  for each $x_o$, but **not** the conditional of the joint mixture (that one would
  weight each $k$ by $p_k(x_o)$);
* completion: each example draws $k$ uniformly, then its missing values in the
  $k$-th observed-first ordering: exact samples of that conditional mixture.

Each example may have its own observed pattern; examples are grouped by pattern,
one forward pass per pattern and base connectivity (for completion, one run of
the fast sampler, started after the observed prefix). The histogram, whose
variables are independent, answers these queries itself (see
[`densitykit.histogram`][densitykit.histogram]).

Example:
    >>> import torch, densitykit as dk
    >>> model = dk.create_model("bernoulli", 4, hidden_sizes=(8,), masks="any-order",
    ...                         num_masks=2)
    >>> x = torch.tensor([[1, 0, 1, 1]])
    >>> observed = torch.tensor([[True, True, False, False]])
    >>> parts = model.backbone, model.head
    >>> joint = marginal_log_prob(*parts, x, observed, model.backbone.connectivities()[:1])
    >>> rest = conditional_log_prob(*parts, x, observed, model.backbone.connectivities()[:1])
    >>> joint.shape, rest.shape
    (torch.Size([1]), torch.Size([1]))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from densitykit import sampling
from densitykit.heads import Head
from densitykit.made import MADE
from densitykit.masks import Connectivity, observed_first
from densitykit.numerics import log_mean_exp

__all__ = [
    "PATTERNS",
    "check_observed",
    "complete",
    "complete_reference",
    "conditional_log_prob",
    "group_by_pattern",
    "marginal_log_prob",
    "observed_pattern",
]

PATTERNS = ("top-half", "bottom-half", "left-half", "right-half", "random:<fraction>")
"""The named observed patterns of [`observed_pattern`][densitykit.queries.observed_pattern]."""


def observed_pattern(
    name: str,
    shape: Sequence[int],
    num_examples: int = 1,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A named observed pattern for ``num_examples`` examples of ``shape``: ``(N, D)`` bool.

    ``top-half``, ``bottom-half``, ``left-half`` and ``right-half`` observe that half of
    an image ``(height, width)`` (the middle row or column of an odd side goes to the
    missing half) and are the same for every example; ``random:F`` observes each
    variable with probability ``F`` in ``(0, 1)``, a new draw per example.

    Raises:
        ValueError: On an unknown name, a fraction outside ``(0, 1)``, or a half of
            data that is not an image.

    Example:
        >>> observed_pattern("top-half", (2, 2)).int().tolist()
        [[1, 1, 0, 0]]
    """
    dim = 1
    for size in shape:
        dim *= int(size)
    if isinstance(name, str) and name.startswith("random:"):
        try:
            fraction = float(name.split(":", 1)[1])
        except ValueError:
            fraction = float("nan")
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"random:F needs a fraction F in (0, 1), got {name!r}")
        return torch.rand(num_examples, dim, generator=generator) < fraction
    halves = PATTERNS[:4]
    if name not in halves:
        raise ValueError(f"observed pattern must be one of {', '.join(PATTERNS)}, got {name!r}")
    if len(shape) != 2:
        raise ValueError(f"{name} needs image data (height, width), got shape {tuple(shape)}")
    height, width = (int(size) for size in shape)
    rows = torch.arange(height)[:, None].expand(height, width)
    cols = torch.arange(width)[None, :].expand(height, width)
    pattern = {
        "top-half": rows < height // 2,
        "bottom-half": rows >= height - height // 2,
        "left-half": cols < width // 2,
        "right-half": cols >= width - width // 2,
    }[name]
    return pattern.reshape(1, dim).expand(num_examples, dim).clone()


def check_observed(
    x: torch.Tensor,
    observed: torch.Tensor,
    dim: int,
    *,
    need_observed: bool = False,
    need_missing: bool = False,
) -> torch.Tensor:
    """Check an observed pattern against values ``x`` ``(B, D)``; return it as ``(B, D)``.

    Args:
        x: ``(B, D)`` values (checked for their shape only).
        observed: ``(B, D)`` or ``(D,)`` (the same pattern for every example) bool.
        dim: The number of variables D.
        need_observed: Every example must observe at least one variable.
        need_missing: Every example must miss at least one variable.

    Raises:
        TypeError: If ``x`` or ``observed`` is not a tensor, or ``observed`` not bool.
        ValueError: On a shape other than ``(B, D)`` / ``(D,)``, or an example with
            nothing observed (or nothing missing) where the query needs some.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor of values, got {type(x).__name__}")
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"x must have shape (B, D) with D={dim}, got {tuple(x.shape)}")
    if not isinstance(observed, torch.Tensor):
        raise TypeError(f"observed must be a torch.Tensor of bool, got {type(observed).__name__}")
    if observed.dtype != torch.bool:
        raise TypeError(f"observed must have dtype torch.bool, got {observed.dtype}")
    if tuple(observed.shape) == (dim,):
        observed = observed.expand(x.shape[0], dim)
    if tuple(observed.shape) != tuple(x.shape):
        raise ValueError(
            f"observed must have the shape of x {tuple(x.shape)} or ({dim},), "
            f"got {tuple(observed.shape)}"
        )
    observed = observed.to(x.device)
    if need_observed and not bool(observed.any(1).all()):
        row = int((~observed.any(1)).nonzero()[0])
        raise ValueError(
            f"every example needs at least one observed variable; example {row} has none"
        )
    if need_missing and not bool((~observed).any(1).all()):
        row = int((~(~observed).any(1)).nonzero()[0])
        raise ValueError(
            f"every example needs at least one missing variable; example {row} has none"
        )
    return observed


def group_by_pattern(observed: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(pattern (D,), rows)`` for each distinct row of ``observed`` ``(B, D)``: the
    examples a query answers together.

    Example:
        >>> observed = torch.tensor([[True, False], [False, True], [True, False]])
        >>> [(p.tolist(), rows.tolist()) for p, rows in group_by_pattern(observed)]
        [([False, True], [1]), ([True, False], [0, 2])]
    """
    if observed.shape[0] == 0:
        return []
    patterns, inverse = torch.unique(observed, dim=0, return_inverse=True)
    return [(pattern, (inverse == p).nonzero().squeeze(1)) for p, pattern in enumerate(patterns)]


def _bases(backbone: MADE, connectivities: Sequence[Connectivity] | None) -> list[Connectivity]:
    bases = list(backbone.connectivities() if connectivities is None else connectivities)
    if not bases:
        raise ValueError("a query needs at least one connectivity, got none")
    for base in bases:
        if not isinstance(base, Connectivity):
            raise TypeError(
                f"connectivities must be densitykit Connectivity objects, got {type(base).__name__}"
            )
    return bases


def _dtype(backbone: MADE, head: Head) -> torch.dtype:
    for module in (backbone, head):
        for parameter in module.parameters():
            return parameter.dtype
    return torch.get_default_dtype()


def _split_log_probs(
    backbone: MADE,
    head: Head,
    x: torch.Tensor,
    observed: torch.Tensor,
    connectivities: Sequence[Connectivity] | None,
    context: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(K, B)`` log-marginals of the observed and log-conditionals of the missing values."""
    dtype = _dtype(backbone, head)
    bases = _bases(backbone, connectivities)
    marginal = torch.zeros(len(bases), x.shape[0], dtype=torch.float64, device=x.device)
    conditional = torch.zeros_like(marginal)
    for pattern, rows in group_by_pattern(observed):
        values = x[rows]
        encoded = head.encode(values, dtype)
        features = None if context is None else context[rows]
        for k, base in enumerate(bases):
            conn = observed_first(base, pattern.cpu())
            params = backbone(encoded, connectivity=conn, context=features)
            per_variable = head._log_prob(params, values)
            marginal[k, rows] = per_variable.masked_fill(~pattern, 0).sum(-1).double()
            conditional[k, rows] = per_variable.masked_fill(pattern, 0).sum(-1).double()
    return marginal, conditional


def conditional_log_prob(
    backbone: MADE,
    head: Head,
    x: torch.Tensor,
    observed: torch.Tensor,
    connectivities: Sequence[Connectivity] | None = None,
    *,
    context: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""$\log \frac1K \sum_k p_k(x_\text{missing} \mid x_\text{observed})$ per example.

    Each $p_k$ is the model under base connectivity $k$ with the observed variables
    moved first (see the module docstring); the mixture is not the conditional of
    the joint mixture.

    Args:
        backbone: The MADE.
        head: The output distribution.
        x: ``(B, D)`` values in the support (``head.value_dtype``), missing ones
            included (scored).
        observed: ``(B, D)`` or ``(D,)`` bool; every example must miss a variable.
        connectivities: The base connectivities (the backbone's own by default).
        context: ``(B, C)`` features of a conditional backbone (encoded, e.g. by
            [`AutoregressiveModel.encode_context`][densitykit.model.AutoregressiveModel.encode_context]).

    Returns:
        ``(B,)`` float64 log-probabilities in nats.
    """
    observed = check_observed(x, observed, head.dim, need_missing=True)
    return log_mean_exp(_split_log_probs(backbone, head, x, observed, connectivities, context)[1])


def marginal_log_prob(
    backbone: MADE,
    head: Head,
    x: torch.Tensor,
    observed: torch.Tensor,
    connectivities: Sequence[Connectivity] | None = None,
    *,
    context: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""$\log \frac1K \sum_k p_k(x_\text{observed})$ per example (missing values ignored).

    Args:
        backbone: The MADE.
        head: The output distribution.
        x: ``(B, D)`` values (``head.value_dtype``); the missing ones are not read (the
            observed-first ordering never conditions on them).
        observed: ``(B, D)`` or ``(D,)`` bool; every example must observe a variable.
        connectivities: The base connectivities (the backbone's own by default).
        context: ``(B, C)`` features of a conditional backbone.

    Returns:
        ``(B,)`` float64 log-probabilities in nats.
    """
    observed = check_observed(x, observed, head.dim, need_observed=True)
    x = x.masked_fill(~observed, head.placeholder)  # never read; any value of the support
    return log_mean_exp(_split_log_probs(backbone, head, x, observed, connectivities, context)[0])


def complete(
    backbone: MADE,
    head: Head,
    x: torch.Tensor,
    observed: torch.Tensor,
    connectivities: Sequence[Connectivity] | None = None,
    generator: torch.Generator | None = None,
    *,
    context: torch.Tensor | None = None,
) -> torch.Tensor:
    """Exact samples of the missing values given the observed ones.

    Each example draws a base connectivity $k$ uniformly, then its missing variables
    one at a time in the $k$-th observed-first ordering: samples of the mixture that
    [`conditional_log_prob`][densitykit.queries.conditional_log_prob] scores. The
    examples of one pattern and base go through the fast sampler
    ([`complete_fast`][densitykit.sampling.complete_fast]), whose work starts after
    the observed prefix.

    Args:
        backbone: The MADE.
        head: The output distribution.
        x: ``(B, D)`` values (``head.value_dtype``); the missing entries are ignored.
        observed: ``(B, D)`` or ``(D,)`` bool.
        connectivities: The base connectivities (the backbone's own by default).
        generator: Random source.
        context: ``(B, C)`` features of a conditional backbone.

    Returns:
        ``(B, D)`` values (``head.value_dtype``): ``x`` where observed, drawn elsewhere.

    Example:
        >>> import torch, densitykit as dk
        >>> model = dk.create_model("bernoulli", 4, hidden_sizes=(8,), masks="any-order")
        >>> x = torch.tensor([[1, 0, 0, 0], [0, 0, 0, 1]])
        >>> observed = torch.tensor([[True, False, False, False], [False, False, False, True]])
        >>> parts = model.backbone, model.head
        >>> fast = complete(*parts, x, observed, generator=torch.Generator().manual_seed(0))
        >>> slow = complete_reference(*parts, x, observed,
        ...                           generator=torch.Generator().manual_seed(0))
        >>> torch.equal(fast, slow), fast[observed].tolist()
        (True, [1, 1])
    """
    return _complete(
        backbone, head, x, observed, connectivities, generator, context, sampling.complete_fast
    )


def complete_reference(
    backbone: MADE,
    head: Head,
    x: torch.Tensor,
    observed: torch.Tensor,
    connectivities: Sequence[Connectivity] | None = None,
    generator: torch.Generator | None = None,
    *,
    context: torch.Tensor | None = None,
) -> torch.Tensor:
    """[`complete`][densitykit.queries.complete] with one full forward pass per missing
    variable ([`complete_reference`][densitykit.sampling.complete_reference]): what
    the fast completion must draw, given the same generator. Arguments and result
    are those of ``complete``."""
    return _complete(
        backbone, head, x, observed, connectivities, generator, context, sampling.complete_reference
    )


@torch.no_grad()
def _complete(
    backbone: MADE,
    head: Head,
    x: torch.Tensor,
    observed: torch.Tensor,
    connectivities: Sequence[Connectivity] | None,
    generator: torch.Generator | None,
    context: torch.Tensor | None,
    sampler: Callable[..., torch.Tensor],
) -> torch.Tensor:
    """Complete with ``sampler`` (a ``complete_fast``-like function) per pattern and base."""
    observed = check_observed(x, observed, head.dim)
    out = x.masked_fill(~observed, head.placeholder).to(head.value_dtype)
    bases = _bases(backbone, connectivities)
    source = generator.device if generator is not None else x.device
    choice = torch.randint(len(bases), (x.shape[0],), generator=generator, device=source)
    choice = choice.to(x.device)
    for pattern, rows in group_by_pattern(observed):
        num_observed = int(pattern.sum())
        for k, base in enumerate(bases):
            chosen = rows[choice[rows] == k]
            if chosen.numel() == 0:
                continue
            conn = observed_first(base, pattern.cpu())
            features = None if context is None else context[chosen]
            out[chosen] = sampler(
                backbone,
                head,
                conn,
                out[chosen],
                num_observed,
                generator=generator,
                context=features,
            )
    return out
