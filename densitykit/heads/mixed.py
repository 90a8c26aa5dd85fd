r"""A head over rows of mixed columns: real, binary, categorical and spiked real.

A table's row holds columns of several kinds. The ``mixed`` head gives each variable
its own kind, and composes the single-kind heads rather than repeating them:

| kind | head of the variable | parameters $P_i$ | input units $W_i$ |
|---|---|---|---|
| ``"real"`` | ``gaussian`` ($M = 1$) or ``gaussian-mixture`` | 2 or $3M$ | 1 |
| ``"binary"`` | ``bernoulli`` over 0/1 | 1 | 1 |
| ``"categorical:N"`` | ``categorical`` over ``0..N-1`` | $N$ | $N$ (one-hot) or 1 |
| ``"spike:V"`` | ``spike`` at $V$ ($M$ components) | 3 or $1 + 3M$ | 1 |

Each variable takes exactly its own number of parameters from the backbone (the
[`variable_widths`][densitykit.heads.Head.variable_widths] of the head: nothing
padded in the network). Values are one floating tensor ``(B, D)``: the discrete
codes as exact floats (0., 1., 2., ...), the reals as they are.

The log-likelihood of a row is a sum of log-masses (binary, categorical, a spike's
value) and log-densities (reals, a spike's density part): a density with respect to
counting measure on the discrete columns times Lebesgue measure on the real ones,
so it sums to one over the codes and integrates to one over the reals.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence

import torch
from torch.distributions import Distribution, constraints

from densitykit.checks import check_bool, check_positive_int
from densitykit.heads.base import Head, _is_integer, uniform
from densitykit.heads.bernoulli import BernoulliHead
from densitykit.heads.categorical import CategoricalHead
from densitykit.heads.gaussian import _check_min_scale
from densitykit.heads.registry import register
from densitykit.heads.spike import SpikeHead, check_spike_value, slab_head
from densitykit.widths import VariableWidths

__all__ = ["KIND_FORMS", "MixedHead", "MixedSupport", "parse_kind"]

KIND_FORMS = ("real", "binary", "categorical:N", "spike:V")
"""The forms a variable's kind takes (``N`` an integer >= 2, ``V`` a finite float)."""

_CATEGORICAL = re.compile(r"categorical:(.*)")
_SPIKE = re.compile(r"spike:(.*)")


def parse_kind(kind: object) -> tuple[str, float | int | None]:
    """A kind string as ``(name, argument)``: ``("real", None)``, ``("binary", None)``,
    ``("categorical", N)`` or ``("spike", V)``.

    Raises:
        TypeError: If ``kind`` is not a string.
        ValueError: If it is none of [`KIND_FORMS`][densitykit.heads.mixed.KIND_FORMS],
            or ``N``/``V`` is not a valid number.

    Example:
        >>> parse_kind("categorical:3"), parse_kind("spike:-0.5"), parse_kind("real")
        (('categorical', 3), ('spike', -0.5), ('real', None))
    """
    if not isinstance(kind, str):
        raise TypeError(f"a column kind must be a string, got {type(kind).__name__}")
    if kind in ("real", "binary"):
        return kind, None
    match = _CATEGORICAL.fullmatch(kind)
    if match:
        try:
            count = int(match.group(1))
        except ValueError:
            count = 0
        if count < 2:
            raise ValueError(f"kind {kind!r}: N in categorical:N must be an integer >= 2")
        return "categorical", count
    match = _SPIKE.fullmatch(kind)
    if match:
        try:
            value = float(match.group(1))
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise ValueError(f"kind {kind!r}: V in spike:V must be a finite number")
        return "spike", check_spike_value(value)
    forms = ", ".join(repr(form) for form in KIND_FORMS)
    raise ValueError(f"unknown column kind {kind!r}; expected one of {forms}")


class MixedSupport(constraints.Constraint):
    """The values of a row of mixed columns: per column, codes ``0..N-1`` (exact
    floats) for a discrete one and any non-NaN float for a real one.

    ``check`` takes values ``(..., D)`` and returns a bool tensor of their shape.

    Args:
        upper: ``(D,)`` the largest code of each discrete column (``inf`` for a real one).
        kinds: The kind strings, for ``repr``.
    """

    is_discrete = False
    event_dim = 0

    def __init__(self, upper: torch.Tensor, kinds: Sequence[str]) -> None:
        self.upper = upper
        self.kinds = tuple(kinds)
        super().__init__()

    def check(self, value: torch.Tensor) -> torch.Tensor:
        upper = self.upper.to(device=value.device)
        discrete = torch.isfinite(upper)
        value = value.double() if not value.is_floating_point() else value
        code = (value == torch.round(value)) & (value >= 0) & (value <= upper.to(value.dtype))
        return torch.where(discrete, code, value == value)

    def __repr__(self) -> str:
        shown = ", ".join(self.kinds[:4]) + (", ..." if len(self.kinds) > 4 else "")
        return f"Mixed({shown})"


@register("mixed")
class MixedHead(Head):
    r"""One head per column kind over a row of mixed columns (see the module docstring).

    Variables of one kind share one single-kind head (a ``gaussian``, a
    ``bernoulli``, a ``categorical`` per N, a ``spike`` per V), which scores, draws
    and encodes them; ``params_per_variable`` is the largest $P_i$ and
    ``input_width`` the largest $W_i$ (the backbone reads the exact
    [`variable_widths`][densitykit.heads.Head.variable_widths]).

    ``distribution(params)`` is refused: a row of mixed kinds is not one
    ``torch.distributions`` family.
    [`variable_distributions`][densitykit.heads.MixedHead.variable_distributions]
    gives one ``Distribution`` per variable instead (``Normal``/``MixtureSameFamily``,
    ``Bernoulli``, ``Categorical``,
    [`SpikeAndSlab`][densitykit.heads.spike.SpikeAndSlab]).

    Args:
        dim: The number of variables D.
        num_values: Must be 0 (the row holds real values).
        kinds: D kind strings, one per variable: ``"real"``, ``"binary"``,
            ``"categorical:N"`` or ``"spike:V"`` (see
            [`parse_kind`][densitykit.heads.mixed.parse_kind]).
        num_components: Gaussian components $M$ of the real and spike columns (1: a
            Gaussian).
        min_scale: The smallest standard deviation of a component.
        one_hot: Feed categorical columns back one-hot ($W_i = N$, the default) or as
            one scalar in $[-1, 1]$ ($W_i = 1$), as the ``categorical`` head's option.

    Raises:
        TypeError: If ``kinds`` is not a sequence of strings.
        ValueError: If ``kinds`` does not have D entries, holds an unknown kind, or an
            option is out of range.

    Example:
        >>> head = MixedHead(dim=4, kinds=["real", "binary", "categorical:3", "spike:0"],
        ...                  num_components=2)
        >>> head.variable_widths
        VariableWidths(inputs=(1, 1, 3, 1), outputs=(6, 1, 3, 7))
        >>> x = torch.tensor([[0.3, 1.0, 2.0, 0.0]])
        >>> head.encode(x, torch.float32)
        tensor([[0.3000, 1.0000, 0.0000, 0.0000, 1.0000, 0.0000]])
        >>> head.log_prob(torch.zeros(1, 4, 7), x).shape
        torch.Size([1, 4])
    """

    value_dtype = torch.float32

    def __init__(
        self,
        dim: int,
        num_values: int = 0,
        kinds: Sequence[str] | None = None,
        num_components: int = 1,
        min_scale: float = 1e-3,
        one_hot: bool = True,
    ) -> None:
        super().__init__(dim, num_values)
        if kinds is None:
            raise TypeError(
                "the mixed head needs kinds=[...], one kind per variable "
                f"(forms {', '.join(KIND_FORMS)})"
            )
        if isinstance(kinds, str) or not isinstance(kinds, Sequence):
            raise TypeError(f"kinds must be a list of D kind strings, got {type(kinds).__name__}")
        if len(kinds) != self.dim:
            raise ValueError(f"kinds needs one entry per variable (D={self.dim}), got {len(kinds)}")
        parsed = [parse_kind(kind) for kind in kinds]
        self.kinds = list(kinds)
        self.num_components = check_positive_int(num_components, "num_components")
        self.min_scale = _check_min_scale(min_scale)
        self.one_hot = check_bool(one_hot, "one_hot")

        # One part (a single-kind head) per distinct kind, in order of first appearance.
        keys: list[tuple[str, float | int | None]] = []
        members: dict[tuple[str, float | int | None], list[int]] = {}
        for variable, key in enumerate(parsed):
            if key not in members:
                keys.append(key)
                members[key] = []
            members[key].append(variable)
        self.parts = torch.nn.ModuleList(self._part(key, len(members[key])) for key in keys)
        self.part_keys = keys
        self.part_variables = [members[key] for key in keys]
        # Per variable: its part and its index among that part's variables.
        self.part_of = [0] * self.dim
        self.index_in_part = [0] * self.dim
        for part, variables in enumerate(self.part_variables):
            for local, variable in enumerate(variables):
                self.part_of[variable], self.index_in_part[variable] = part, local
        self._discrete = [key[0] in ("binary", "categorical") for key in keys]

        inputs, outputs = [0] * self.dim, [0] * self.dim
        for part, variables in zip(self.parts, self.part_variables):
            for variable in variables:
                inputs[variable], outputs[variable] = part.input_width, part.params_per_variable
        self._widths = VariableWidths(tuple(inputs), tuple(outputs))
        self.params_per_variable = self._widths.max_outputs
        self.input_width = self._widths.max_inputs
        self.uniforms_per_sample = max(part.uniforms_per_sample for part in self.parts)

        upper = torch.full((self.dim,), math.inf, dtype=torch.float64, device="cpu")
        for key, variables in zip(keys, self.part_variables):
            if key[0] == "binary":
                upper[variables] = 1.0
            elif key[0] == "categorical":
                upper[variables] = float(key[1]) - 1.0
        self._support = MixedSupport(upper, self.kinds)
        # Index tensors (moved with the head): the variables of each part, and the
        # permutations from the parts' concatenated outputs back to variable order.
        # Computed on the CPU, then placed on the default device (index arithmetic on
        # "meta", where parameter_count builds heads, would import torch._dynamo).
        device = torch.empty(0).device  # the default (torch.get_default_device needs 2.3)
        for part, variables in enumerate(self.part_variables):
            index = torch.tensor(variables, device="cpu").to(device)
            self.register_buffer(f"_variables_{part}", index, persistent=False)
        order = torch.cat([torch.tensor(v, device="cpu") for v in self.part_variables])
        self.register_buffer("_variable_order", torch.argsort(order).to(device), persistent=False)
        units = torch.cat([self._widths.input_units(v) for v in self.part_variables])
        self.register_buffer("_input_order", torch.argsort(units).to(device), persistent=False)

    def _part(self, key: tuple[str, float | int | None], count: int) -> Head:
        name, argument = key
        if name == "real":
            return slab_head(count, self.num_components, self.min_scale)
        if name == "binary":
            return BernoulliHead(count)
        if name == "categorical":
            return CategoricalHead(count, int(argument), one_hot=self.one_hot)
        return SpikeHead(
            count,
            value=float(argument),
            num_components=self.num_components,
            min_scale=self.min_scale,
        )

    def _variables(self, part: int) -> torch.Tensor:
        return getattr(self, f"_variables_{part}")

    @property
    def variable_widths(self) -> VariableWidths:
        """Each variable's own input units and parameters (see the table above)."""
        return self._widths

    @property
    def support(self) -> MixedSupport:
        """Codes ``0..N-1`` on the discrete columns, any non-NaN real on the others."""
        return self._support

    @property
    def placeholder(self) -> float:
        """0.0: a code of every discrete column and a real."""
        return 0.0

    def _values(self, part: int, x: torch.Tensor) -> torch.Tensor:
        """A part's values in the dtype its head reads (long codes for a discrete one)."""
        return x.long() if self._discrete[part] else x

    # -- what the backbone reads and writes ------------------------------------------------
    def encode(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Values ``(B, D)`` to inputs ``(B, sum W_i)``: each part encodes its columns."""
        pieces = [
            part.encode(self._values(index, x.index_select(-1, self._variables(index))), dtype)
            for index, part in enumerate(self.parts)
        ]
        return torch.cat(pieces, -1).index_select(-1, self._input_order)

    def _log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        pieces = []
        for index, part in enumerate(self.parts):
            variables = self._variables(index)
            own = params.index_select(-2, variables)[..., : part.params_per_variable]
            values = self._values(index, x.index_select(-1, variables))
            pieces.append(part._log_prob(own, values))
        dtype = functools.reduce(torch.promote_types, (piece.dtype for piece in pieces))
        pieces = [piece.to(dtype) for piece in pieces]
        return torch.cat(pieces, -1).index_select(-1, self._variable_order)

    def variable_distributions(self, params: torch.Tensor) -> list[Distribution]:
        """One ``torch.distributions`` distribution per variable, of batch shape
        ``params.shape[:-2]`` for parameters ``(..., D, P)``.

        Example:
            >>> head = MixedHead(dim=2, kinds=["binary", "real"])
            >>> [type(d).__name__ for d in head.variable_distributions(torch.zeros(5, 2, 2))]
            ['Bernoulli', 'Normal']
        """
        out = []
        for variable in range(self.dim):
            part = self.parts[self.part_of[variable]]
            out.append(part.distribution(params[..., variable, : part.params_per_variable]))
        return out

    def distribution(self, params: torch.Tensor) -> Distribution:
        """Refused: a row of mixed kinds is not one distribution (see
        [`variable_distributions`][densitykit.heads.MixedHead.variable_distributions]).

        Raises:
            NotImplementedError: Always.
        """
        raise NotImplementedError(
            "a row of mixed kinds is not one torch distribution; "
            "MixedHead.variable_distributions(params) gives one per variable"
        )

    # -- sampling --------------------------------------------------------------------------
    def sample(
        self, params: torch.Tensor, variable: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        u = uniform(
            (self.uniforms_per_sample, params.shape[0]),
            generator,
            device=params.device,
            dtype=self.sample_dtype(params.dtype),
        )
        return self.sample_variable_from_uniforms(params, u, variable)

    def sample_from_uniforms(self, params: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Refused: the draw depends on the variable's kind (the samplers call
        ``sample_variable_from_uniforms``).

        Raises:
            NotImplementedError: Always.
        """
        raise NotImplementedError(
            "MixedHead draws each variable by its own kind: call "
            "sample_variable_from_uniforms(params, u, variable)"
        )

    def sample_variable_from_uniforms(
        self, params: torch.Tensor, u: torch.Tensor, variable: int
    ) -> torch.Tensor:
        """Variable ``variable``'s part draws from its own parameters and the first of
        the uniforms it declares; values as floats."""
        part = self.parts[self.part_of[variable]]
        own = params[:, : part.params_per_variable]
        values = part.sample_from_uniforms(own, u[: part.uniforms_per_sample])
        return values.to(torch.promote_types(self.value_dtype, own.dtype))

    def encode_variable_into(self, values: torch.Tensor, out: torch.Tensor, variable: int) -> None:
        part = self.part_of[variable]
        self.parts[part].encode_into(self._values(part, values), out)

    # -- checks ----------------------------------------------------------------------------
    def check_values(self, x: torch.Tensor) -> None:
        """Raise unless ``x`` ``(..., D)`` holds finite values with valid codes in the
        discrete columns; each message is one line naming the column and its kind.

        Raises:
            TypeError: If ``x`` is not a real tensor.
            ValueError: On a shape without D columns, NaN/inf, or a discrete column
                holding a non-integer or a code out of range.

        Example:
            >>> head = MixedHead(dim=2, kinds=["real", "categorical:3"])
            >>> head.check_values(torch.tensor([[0.5, 3.0]]))
            Traceback (most recent call last):
            ...
            ValueError: x column 1 (categorical:3) holds the code 3; expected codes 0..2
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor of mixed values, got {type(x).__name__}")
        if x.is_complex() or not (x.dtype == torch.bool or x.is_floating_point() or _is_integer(x)):
            raise TypeError(f"x must have a real dtype for the MixedHead, got {x.dtype}")
        if x.ndim == 0 or x.shape[-1] != self.dim:
            raise ValueError(f"x must have shape (..., D) with D={self.dim}, got {tuple(x.shape)}")
        if not x.numel():
            return
        rows = x.reshape(-1, self.dim)
        if rows.is_floating_point() and not bool(torch.isfinite(rows).all()):
            bad = (~torch.isfinite(rows)).any(0).nonzero()[0].item()
            raise ValueError(
                f"x column {bad} ({self.kinds[bad]}) contains NaN or infinite values; "
                "expected finite values"
            )
        for part, variables in enumerate(self.part_variables):
            if not self._discrete[part]:
                continue
            columns = rows[:, variables]
            upper = 1 if self.part_keys[part][0] == "binary" else int(self.part_keys[part][1]) - 1
            if columns.is_floating_point():
                fractional = columns != torch.round(columns)
                if bool(fractional.any()):
                    column = variables[int(fractional.any(0).nonzero()[0])]
                    value = float(columns[fractional][0])
                    raise ValueError(
                        f"x column {column} ({self.kinds[column]}) holds the non-integer "
                        f"{value:g}; expected codes 0..{upper}"
                    )
            outside = (columns < 0) | (columns > upper)
            if bool(outside.any()):
                column = variables[int(outside.any(0).nonzero()[0])]
                value = float(columns[outside][0])
                raise ValueError(
                    f"x column {column} ({self.kinds[column]}) holds the code {value:g}; "
                    f"expected codes 0..{upper}"
                )

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, kinds={self._support!r}, "
            f"num_components={self.num_components}, one_hot={self.one_hot}"
        )
