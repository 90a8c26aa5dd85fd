r"""How many units each variable takes in a network's inputs and outputs.

Most heads give every variable the same number of input units ``W`` (its encoding:
1 for a scalar, ``K`` for one-hot) and of output units ``P`` (its parameters). A head
over a row of mixed columns (a binary, a categorical over ``N`` values, a real) gives
each variable its own: ``P_i`` and ``W_i``.
[`VariableWidths`][densitykit.widths.VariableWidths] holds the two tuples and the
index arithmetic that follows from them, written once for the backbones and the
samplers.

Layouts: input unit ``input_starts[i] + w`` is unit ``w`` of variable ``i``; flat
output unit ``output_starts[i] + p`` is parameter ``p`` of variable ``i``. A network
has exactly ``sum(P_i)`` output units (nothing padded); the parameters handed to a
head are ``(B, D, P)`` with ``P = max(P_i)``, variable ``i``'s in ``[:, i, :P_i]``
and zeros after them ([`pad`][densitykit.widths.VariableWidths.pad]).

Example:
    >>> widths = VariableWidths(inputs=(1, 3, 1), outputs=(1, 3, 2))
    >>> widths.output_starts, widths.max_outputs
    ((0, 1, 4, 6), 3)
    >>> widths.pad(torch.arange(1.0, 7.0)[None]).tolist()
    [[[1.0, 0.0, 0.0], [2.0, 3.0, 4.0], [5.0, 6.0, 0.0]]]
    >>> widths.output_units([2, 0]).tolist()
    [4, 5, 0]
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from itertools import accumulate

import torch

from densitykit.checks import check_int, check_positive_int

__all__ = ["VariableWidths", "widths_of"]


class VariableWidths:
    """Input units and output units (parameters) of each of D variables.

    Immutable. A side whose variables are all alike is kept as one number, so the
    widths of a very large D cost nothing until a per-variable list is asked for.

    Args:
        inputs: ``(W_1, ..., W_D)``, input units of each variable, each at least 1.
        outputs: ``(P_1, ..., P_D)``, output units of each variable, each at least 0
            (0: a head with parameters of its own, which takes none from a network).

    Raises:
        TypeError: If a width is not an integer.
        ValueError: If the tuples are empty, differ in length, or hold an input width
            below 1 or a negative parameter count.
    """

    def __init__(self, inputs: Sequence[int], outputs: Sequence[int]) -> None:
        inputs = tuple(check_positive_int(w, "an input width") for w in inputs)
        outputs = tuple(check_int(p, "a parameter count", minimum=0) for p in outputs)
        if not inputs or len(inputs) != len(outputs):
            raise ValueError(
                "input widths and parameter counts need one entry per variable (at least "
                f"one), got {len(inputs)} and {len(outputs)}"
            )
        self._dim = len(inputs)
        self._inputs: int | tuple[int, ...] = inputs[0] if len(set(inputs)) == 1 else inputs
        self._outputs: int | tuple[int, ...] = outputs[0] if len(set(outputs)) == 1 else outputs

    @classmethod
    def uniform(cls, dim: int, input_width: int, params_per_variable: int) -> VariableWidths:
        """The same ``W`` and ``P`` for each of ``dim`` variables (nothing per variable
        is stored).

        Example:
            >>> VariableWidths.uniform(2, 1, 3)
            VariableWidths(inputs=(1, 1), outputs=(3, 3))
        """
        widths = cls((input_width,), (params_per_variable,))
        widths._dim = check_positive_int(dim, "dim")
        return widths

    @classmethod
    def of(
        cls, dim: int, input_width: int | Sequence[int], params_per_variable: int | Sequence[int]
    ) -> VariableWidths:
        """Widths from one int (every variable) or one entry per variable, for each side.

        Raises:
            ValueError: If a sequence's length is not ``dim``.

        Example:
            >>> VariableWidths.of(2, 1, [2, 3])
            VariableWidths(inputs=(1, 1), outputs=(2, 3))
        """
        if not isinstance(input_width, Sequence) and not isinstance(params_per_variable, Sequence):
            return cls.uniform(dim, input_width, params_per_variable)
        sides = []
        for name, value in (
            ("input_width", input_width),
            ("params_per_variable", params_per_variable),
        ):
            if isinstance(value, Sequence):
                if len(value) != dim:
                    raise ValueError(
                        f"{name} needs one entry per variable (D={dim}), got {len(value)}"
                    )
                sides.append(tuple(value))
            else:
                sides.append((value,) * dim)
        return cls(*sides)

    @property
    def inputs(self) -> tuple[int, ...]:
        """``(W_1, ..., W_D)``."""
        return _spread(self._inputs, self._dim)

    @property
    def outputs(self) -> tuple[int, ...]:
        """``(P_1, ..., P_D)``."""
        return _spread(self._outputs, self._dim)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VariableWidths):
            return NotImplemented
        return (self._dim, self._inputs, self._outputs) == (
            other._dim,
            other._inputs,
            other._outputs,
        )

    def __hash__(self) -> int:
        return hash((self._dim, self._inputs, self._outputs))

    def __repr__(self) -> str:
        if self._dim > 8:
            return (
                f"VariableWidths(dim={self._dim}, inputs={_summary(self._inputs)}, "
                f"outputs={_summary(self._outputs)})"
            )
        return f"VariableWidths(inputs={self.inputs}, outputs={self.outputs})"

    @property
    def dim(self) -> int:
        """The number of variables D."""
        return self._dim

    @property
    def is_uniform(self) -> bool:
        """Whether every variable has the same input width and the same parameter count."""
        return isinstance(self._inputs, int) and isinstance(self._outputs, int)

    @property
    def num_inputs(self) -> int:
        """Input units of all variables, $\\sum_i W_i$."""
        return _total(self._inputs, self._dim)

    @property
    def num_outputs(self) -> int:
        """Output units of all variables, $\\sum_i P_i$."""
        return _total(self._outputs, self._dim)

    @property
    def max_inputs(self) -> int:
        """The largest input width."""
        return self._inputs if isinstance(self._inputs, int) else max(self._inputs)

    @property
    def max_outputs(self) -> int:
        """The largest parameter count: the last dimension of the parameters ``(B, D, P)``."""
        return self._outputs if isinstance(self._outputs, int) else max(self._outputs)

    @cached_property
    def input_starts(self) -> tuple[int, ...]:
        """``D + 1`` offsets: variable ``i``'s input units are
        ``input_starts[i]:input_starts[i + 1]``."""
        return (0, *accumulate(self.inputs))

    @cached_property
    def output_starts(self) -> tuple[int, ...]:
        """``D + 1`` offsets of the flat output units, as ``input_starts``."""
        return (0, *accumulate(self.outputs))

    def input_degrees(self, degrees: torch.Tensor) -> torch.Tensor:
        """Each input unit's degree: variable ``i``'s degree repeated ``W_i`` times."""
        return degrees.repeat_interleave(_repeats(self._inputs, degrees))

    def output_degrees(self, degrees: torch.Tensor) -> torch.Tensor:
        """Each output unit's degree: variable ``i``'s degree repeated ``P_i`` times."""
        return degrees.repeat_interleave(_repeats(self._outputs, degrees))

    def repeat_inputs(self, per_variable: torch.Tensor) -> torch.Tensor:
        """A value per variable ``(..., D)`` repeated over its input units ``(..., sum W_i)``."""
        return per_variable.repeat_interleave(_repeats(self._inputs, per_variable), dim=-1)

    def input_units(self, variables: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """The input units of ``variables``, in their order (long, on the CPU)."""
        return _units(self.input_starts, variables)

    def output_units(self, variables: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """The flat output units of ``variables``, in their order (long, on the CPU)."""
        return _units(self.output_starts, variables)

    def in_order(
        self, ordering: Sequence[int] | torch.Tensor
    ) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Offsets of the input and output units of the variables in ``ordering``'s order:
        ``(input_ends, output_ends)``, each of length ``D + 1`` (step ``t``'s units are
        ``ends[t]:ends[t+1]`` among the units sorted by step)."""
        order = [
            int(v) for v in (ordering.tolist() if isinstance(ordering, torch.Tensor) else ordering)
        ]
        return (
            (0, *accumulate(self.inputs[v] for v in order)),
            (0, *accumulate(self.outputs[v] for v in order)),
        )

    @cached_property
    def _pad_index(self) -> torch.Tensor:
        """Position of each flat output unit in the padded ``(D * P_max)`` layout."""
        width = self.max_outputs
        return torch.cat(
            [torch.arange(p, device="cpu") + i * width for i, p in enumerate(self.outputs)]
        )

    def pad(self, flat: torch.Tensor) -> torch.Tensor:
        """Flat outputs ``(B, sum P_i)`` as parameters ``(B, D, P_max)``, zeros after each
        variable's own (a view when the widths are uniform); gradients flow back."""
        batch = flat.shape[0]
        if isinstance(self._outputs, int):
            return flat.view(batch, self.dim, self._outputs)
        index = self._pad_index.to(flat.device)
        padded = flat.new_zeros(batch, self.dim * self.max_outputs)
        return padded.index_copy(1, index, flat).view(batch, self.dim, self.max_outputs)

    def unpad(self, params: torch.Tensor) -> torch.Tensor:
        """Parameters ``(B, D, P_max)`` as flat outputs ``(B, sum P_i)`` (``pad``'s inverse)."""
        flat = params.reshape(params.shape[0], -1)
        if isinstance(self._outputs, int):
            return flat
        return flat.index_select(1, self._pad_index.to(flat.device))


def widths_of(head: object) -> VariableWidths:
    """A head's [`VariableWidths`][densitykit.widths.VariableWidths]: its own
    ``variable_widths`` if it has them, else uniform from ``input_width`` and
    ``params_per_variable``."""
    widths = getattr(head, "variable_widths", None)
    if isinstance(widths, VariableWidths):
        return widths
    return VariableWidths.uniform(head.dim, head.input_width, head.params_per_variable)


def _repeats(widths: int | tuple[int, ...], like: torch.Tensor) -> torch.Tensor | int:
    if isinstance(widths, int):
        return widths
    return torch.tensor(widths, device=like.device)


def _spread(widths: int | tuple[int, ...], dim: int) -> tuple[int, ...]:
    return (widths,) * dim if isinstance(widths, int) else widths


def _total(widths: int | tuple[int, ...], dim: int) -> int:
    return widths * dim if isinstance(widths, int) else sum(widths)


def _summary(widths: int | tuple[int, ...]) -> str:
    return str(widths) if isinstance(widths, int) else f"({', '.join(map(str, widths[:4]))}, ...)"


def _units(starts: tuple[int, ...], variables: Sequence[int] | torch.Tensor) -> torch.Tensor:
    # On the CPU explicitly: index arithmetic, also under a default device of "meta".
    variables = torch.as_tensor(variables, dtype=torch.long, device="cpu").reshape(-1)
    bounds = torch.tensor(starts, device="cpu")
    first, lengths = bounds[:-1][variables], (bounds[1:] - bounds[:-1])[variables]
    before = lengths.cumsum(0) - lengths  # units of the variables listed earlier
    within = torch.arange(int(lengths.sum()), device="cpu") - before.repeat_interleave(lengths)
    return first.repeat_interleave(lengths) + within
