"""The interface every output distribution ("head") implements."""

from __future__ import annotations

import abc

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Categorical, Distribution, biject_to, constraints

from densitykit.checks import check_int, check_positive_int
from densitykit.widths import VariableWidths

__all__ = ["Head", "encode_values", "scale_to_unit_interval", "uniform"]


def uniform(
    shape: tuple[int, ...],
    generator: torch.Generator | None,
    *,
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Uniform draws in $(0, 1)$ from ``generator``, placed on ``device``.

    The draw happens on the generator's own device (so a CPU generator drives a
    CUDA model reproducibly) and is then moved.
    """
    source = generator.device if generator is not None else device
    draws = torch.rand(shape, generator=generator, device=source, dtype=torch.float64)
    tiny = torch.finfo(dtype).tiny
    return draws.to(device=device, dtype=dtype).clamp(tiny, 1.0 - torch.finfo(dtype).eps)


def inverse_cdf(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Index drawn from each row of ``probs`` ``(N, K)`` given uniforms ``u`` ``(N,)``."""
    cdf = probs.cumsum(-1)
    return (cdf < u[:, None] * cdf[:, -1:]).sum(-1).clamp(max=probs.shape[-1] - 1)


def scale_to_unit_interval(x: torch.Tensor, num_values: int, dtype: torch.dtype) -> torch.Tensor:
    """Map values ``0..K-1`` to $[-1, 1]$ (bin centres of an ordinal variable)."""
    return x.to(dtype) * (2.0 / (num_values - 1)) - 1.0


def encode_values(
    x: torch.Tensor, num_values: int, dtype: torch.dtype, *, one_hot: bool
) -> torch.Tensor:
    """Backbone inputs of values ``(B, D)``: one-hot ``(B, D * K)`` or scaled ``(B, D)``.

    The encoding of the heads over ``0..K-1`` that offer both (categorical,
    logistic mixture): K one-hot units per variable, or one scalar in $[-1, 1]$.

    Example:
        >>> encode_values(torch.tensor([[0, 2]]), 3, torch.float32, one_hot=False)
        tensor([[-1.,  1.]])
        >>> encode_values(torch.tensor([[0, 2]]), 3, torch.float32, one_hot=True)
        tensor([[1., 0., 0., 0., 0., 1.]])
    """
    if one_hot:
        return F.one_hot(x, num_values).to(dtype).flatten(-2)
    return scale_to_unit_interval(x, num_values, dtype)


class Head(nn.Module, abc.ABC):
    r"""An output distribution over one variable given its parameters.

    A head tells the backbone how many parameters it needs per variable
    (``params_per_variable``), how values are fed back as inputs (``encode`` and
    ``input_width``), which values it puts mass on (``support``, a
    ``torch.distributions`` constraint) and in which dtype they are held
    (``value_dtype``), how to score values (``log_prob``), how to draw one variable
    (``sample``), and hands back a ``torch.distributions.Distribution`` for given
    parameters (``distribution``). The model, the samplers and the queries ask the
    head all of this: they never assume the values are integers.

    As in ``torch.distributions``, the public ``log_prob`` checks values against the
    support and the private ``_log_prob`` computes: subclasses implement
    ``_log_prob`` (the model calls it on values it has already checked, with
    [`check_values`][densitykit.heads.Head.check_values]).

    *Discrete heads* (``bernoulli``, ``categorical``, ``logistic-mixture``,
    ``histogram``) hold ``torch.long`` values ``0..K-1``: the
    default support is ``integer_interval(0, num_values - 1)`` and ``num_values`` K is
    at least 2. *A head over real values* sets ``value_dtype`` to a floating dtype,
    declares its own ``support`` (e.g. ``constraints.real``) and ``distribution``,
    encodes values as it likes (e.g. the value itself, ``input_width = 1``) and has no
    finite number of values: its ``num_values`` is 0 (the built-in ``gaussian`` and
    ``gaussian-mixture``).

    Subclasses set ``params_per_variable`` and ``input_width`` in ``__init__`` and
    implement ``encode``, ``_log_prob`` and ``sample``.

    *Per-variable widths.* A head may give each variable its own number of
    parameters $P_i$ and input units $W_i$ (a row of mixed columns: a binary takes 1
    parameter, a categorical over N values N, a real mixture 3M): it overrides
    [`variable_widths`][densitykit.heads.Head.variable_widths], sets
    ``params_per_variable`` to the largest $P_i$ and ``input_width`` to the largest
    $W_i$, encodes values ``(B, D)`` into ``(B, sum W_i)`` and reads variable ``i``'s
    parameters from ``params[..., i, :P_i]`` (the backbone's outputs are exactly
    $\sum_i P_i$ units; the parameters it hands over are zero-padded to ``(B, D, P)``).
    Such a head samples and encodes one variable knowing which
    (``sample_variable_from_uniforms``, ``encode_variable_into``). The default is
    the same $P$ and $W$ for every variable, and nothing changes for such a head. A head whose
    ``params_per_variable`` is 0 has parameters of its own and takes none from a
    network: the MADE and the orderless model refuse it (the histogram head is used by
    its own family, [`densitykit.histogram`][densitykit.histogram]).

    Args:
        dim: The number of variables D.
        num_values: Values per variable K, at least 2 for a discrete head; 0 for a
            head over real values (a floating ``value_dtype``).

    Raises:
        ValueError: If ``num_values`` does not fit the head's kind of values.
    """

    params_per_variable: int
    input_width: int

    value_dtype: torch.dtype = torch.long
    """The dtype values are held in (``torch.long`` for the discrete heads; a floating
    dtype for a head over real values): the model casts checked values to it, and the
    samplers create their outputs in it."""

    def __init__(self, dim: int, num_values: int) -> None:
        super().__init__()
        self.dim = check_positive_int(dim, "dim")
        if self.value_dtype.is_floating_point:
            num_values = check_int(num_values, "num_values", minimum=0)
            if num_values != 0:
                raise ValueError(
                    f"the {type(self).__name__} is over real values ({self.value_dtype}), "
                    f"which have no finite number: num_values must be 0, got {num_values}"
                )
            self.num_values = 0
        else:
            self.num_values = check_int(num_values, "num_values", minimum=2)

    def initial_bias(self) -> torch.Tensor | None:
        """The ``(P,)`` bias each variable's parameters start from, or ``None``.

        A network that feeds the head (the MADE, the orderless model) sets its output
        layer's bias to it when built, the same for every variable: a starting point,
        not part of the parametrization, so checkpoints and trained models are unchanged.
        ``None`` (the default, every discrete head) keeps the layer's own initialization.
        """
        return None

    def data_initial_bias(self, values: torch.Tensor) -> torch.Tensor | None:
        """The ``(D, P)`` bias each variable's parameters start from, fitted to training
        ``values`` ``(N, D)``, or ``None`` (the default: the head has none, and
        [`initial_bias`][densitykit.heads.Head.initial_bias] stays).

        A network's output bias set to it makes a new model start at the data's
        marginals (each variable on its own) instead of at a fixed point, which on data
        far from that point (MNIST in logit space: means near -8, scales near 4) saves
        the first thousands of steps. A starting point, like ``initial_bias``: what a
        trained model computes is unchanged. See
        [`DensityModel.initialize_from_data`][densitykit.family.DensityModel.initialize_from_data].
        """
        return None

    @property
    def support(self) -> constraints.Constraint:
        """The values the head puts mass on: ``integer_interval(0, num_values - 1)``."""
        return constraints.integer_interval(0, self.num_values - 1)

    @property
    def placeholder(self) -> float | int:
        """A value in the support that stands for a variable not known yet (never read).

        The samplers fill the variables still to draw with it, and the queries the
        missing ones they do not read: any value of the support would do, but one
        outside it could reach the arithmetic as NaN through a zero weight. The lower
        bound of a discrete support (0 for ``0..K-1``); for a continuous one, the image
        of 0 under ``torch.distributions.biject_to(support)`` (0 for the reals).
        """
        support = self.support
        if not self.value_dtype.is_floating_point:
            return int(getattr(support, "lower_bound", 0))
        return float(biject_to(support)(torch.zeros((), dtype=torch.float64)))

    def blank(self, num_rows: int, device: torch.device | str | None = None) -> torch.Tensor:
        """``(num_rows, D)`` placeholders in ``value_dtype``: a sampler's empty output."""
        return torch.full(
            (num_rows, self.dim), self.placeholder, dtype=self.value_dtype, device=device
        )

    @property
    def variable_widths(self) -> VariableWidths:
        """Input units and parameters of each variable
        ([`VariableWidths`][densitykit.widths.VariableWidths]): by default
        ``input_width`` and ``params_per_variable`` for every variable; a head with
        per-variable widths overrides it.

        Example:
            >>> import densitykit as dk
            >>> dk.heads.create("categorical", dim=2, num_values=3).variable_widths
            VariableWidths(inputs=(3, 3), outputs=(3, 3))
        """
        return VariableWidths.uniform(self.dim, self.input_width, self.params_per_variable)

    @abc.abstractmethod
    def encode(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Turn values ``(B, D)`` into backbone inputs ``(B, D * input_width)``
        (``(B, sum W_i)`` for a head with per-variable widths)."""

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per-variable log-probabilities of values checked against the support.

        Args:
            params: ``(B, D, P)`` parameters from the backbone.
            x: ``(B, D)`` values in the support.

        Returns:
            ``(B, D)`` log-probabilities in nats, in at least float32.

        Raises:
            TypeError: If ``x`` is not a tensor.
            ValueError: If ``x`` holds values outside ``support``.
        """
        self.check_support(x)
        return self._log_prob(params, x)

    @abc.abstractmethod
    def _log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """[`log_prob`][densitykit.heads.Head.log_prob] without the support check."""

    def check_support(self, x: torch.Tensor) -> None:
        """Raise unless every value of ``x`` lies in ``support``.

        Raises:
            TypeError: If ``x`` is not a tensor.
            ValueError: Naming the support and the values outside it.

        Example:
            >>> import densitykit as dk
            >>> dk.heads.create("bernoulli", dim=1).check_support(torch.tensor([[2]]))
            Traceback (most recent call last):
            ...
            ValueError: values must lie in the support Boolean() of the BernoulliHead, got 2
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        inside = self.support.check(x)
        if not bool(inside.all()):
            outside = x[~inside].unique()
            shown = ", ".join(str(v) for v in outside[:5].tolist())
            more = f" and {len(outside) - 5} more" if len(outside) > 5 else ""
            raise ValueError(
                f"values must lie in the support {self.support} of the "
                f"{type(self).__name__}, got {shown}{more}"
            )

    def check_values(self, x: torch.Tensor) -> None:
        """Raise unless ``x`` holds finite values of the support, read in its own dtype.

        The model's checks of its inputs (after their shape): the dtype must be real
        (bool, integer or floating), floating values finite (and integral for a
        discrete support), and every value must lie in ``support``. A support
        ``0..K-1`` (or boolean) is checked by its minimum and maximum, so a large uint8
        batch is not widened; any other support by its ``check``, a chunk at a time.

        Args:
            x: Values of any shape.

        Raises:
            TypeError: If ``x`` is not a tensor, or has a complex or non-numeric dtype.
            ValueError: On NaN/inf, non-integer values of a discrete support, or values
                outside ``support``; the message names the support and what came.

        Example:
            >>> import densitykit as dk
            >>> dk.heads.create("bernoulli", dim=1).check_values(torch.tensor([0.5]))
            Traceback (most recent call last):
            ...
            ValueError: x contains non-integer values (such as 0.5); expected ... Boolean() ...
        """
        support, name = self.support, type(self).__name__
        expected = f"values in the support {support} of the {name}"
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor of {expected}, got {type(x).__name__}")
        if x.is_complex() or not (x.dtype == torch.bool or x.is_floating_point() or _is_integer(x)):
            kinds = "an integer (or integral float)" if support.is_discrete else "a real"
            raise TypeError(f"x must have {kinds} dtype for {expected}, got {x.dtype}")
        if x.is_floating_point() and x.numel():
            if not bool(torch.isfinite(x).all()):
                raise ValueError(f"x contains NaN or infinite values; expected {expected}")
            if support.is_discrete:
                fractional = x != torch.round(x)
                if bool(fractional.any()):
                    raise ValueError(
                        f"x contains non-integer values (such as {float(x[fractional][0]):g}); "
                        f"expected {expected}"
                    )
        bounds = _integer_bounds(support)
        if bounds is not None:
            if x.numel():
                low, high = torch.aminmax(x.to(torch.uint8) if x.dtype == torch.bool else x)
                if low < bounds[0] or high > bounds[1]:
                    raise ValueError(
                        f"x values must lie in the support {bounds[0]}..{bounds[1]} ({support}) "
                        f"of the {name}, got values in {int(low)}..{int(high)}"
                    )
            return
        flat = x.reshape(-1)
        for start in range(0, flat.numel(), _CHECK_CHUNK):
            chunk = flat[start : start + _CHECK_CHUNK]
            inside = support.check(chunk)
            if not bool(inside.all()):
                outside = chunk[~inside].unique()
                shown = ", ".join(f"{v:g}" for v in outside[:5].double().tolist())
                more = f" and {len(outside) - 5} more" if len(outside) > 5 else ""
                raise ValueError(
                    f"x values must lie in the support {support} of the {name}, got {shown}{more}"
                )

    def distribution(self, params: torch.Tensor) -> Distribution:
        """The ``torch.distributions`` distribution of parameters ``(..., P)``.

        Its batch shape is ``params.shape[:-1]``. This default enumerates the K values
        of the support (exact for any head over ``0..K-1``) into a ``Categorical``;
        heads with a closed form override it.

        Args:
            params: Parameters ``(..., P)``, e.g. ``(B, D, P)`` from the backbone.

        Raises:
            NotImplementedError: For a head over real values, which has no values to
                enumerate and must define its own.
        """
        if self.value_dtype.is_floating_point:
            raise NotImplementedError(
                f"{type(self).__name__} is over real values ({self.value_dtype}): it has no "
                "values to enumerate and must define its own distribution(params)"
            )
        values = torch.arange(self.num_values, device=params.device)
        values = values.reshape(-1, *([1] * (params.ndim - 1))).expand(-1, *params.shape[:-1])
        every = params.expand(self.num_values, *params.shape)
        return Categorical(logits=self._log_prob(every, values).movedim(0, -1))

    uniforms_per_sample: int = 0
    """How many uniform draws ``sample`` takes per row: ``k > 0`` declares that
    ``sample(params, variable, generator)`` is exactly
    ``sample_variable_from_uniforms(params, uniform((k, N), generator, ...), variable)``
    (with the dtype of [`sample_dtype`][densitykit.heads.Head.sample_dtype]; for most
    heads that is ``sample_from_uniforms``, whatever the variable), so the
    fast sampler may draw the uniforms of many steps in one call and get the same
    samples; 0 (the default, for plug-in heads) makes no such promise."""

    @abc.abstractmethod
    def sample(
        self, params: torch.Tensor, variable: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw variable ``variable`` for each row of ``params`` ``(N, P)``: ``(N,)`` values
        of the support (in ``value_dtype``, or any dtype the samplers cast to it)."""

    def sample_from_uniforms(self, params: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Draw one variable for each row of ``params`` ``(N, P)`` from uniforms ``u``
        ``(k, N)`` in $(0, 1)$, ``k = uniforms_per_sample``: ``(N,)`` values, as ``sample``.

        Raises:
            NotImplementedError: For a head that does not declare ``uniforms_per_sample``.
        """
        raise NotImplementedError(
            f"{type(self).__name__} draws its own random numbers (uniforms_per_sample=0)"
        )

    def sample_variable_from_uniforms(
        self, params: torch.Tensor, u: torch.Tensor, variable: int
    ) -> torch.Tensor:
        """``sample_from_uniforms`` for variable ``variable``: what the fast sampler
        calls. The default ignores the variable; a head whose variables differ (per-
        variable widths) overrides it. ``params`` may hold the variable's own $P_i$
        columns or the padded $P$."""
        return self.sample_from_uniforms(params, u)

    def sample_by_uniforms(
        self, params: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        """``sample`` for a head that declares ``uniforms_per_sample``: its uniforms
        from ``generator``, then ``sample_from_uniforms``.

        Raises:
            NotImplementedError: For a head that declares no uniforms.
        """
        if self.uniforms_per_sample <= 0:
            raise NotImplementedError(
                f"{type(self).__name__} declares no uniforms (uniforms_per_sample=0)"
            )
        u = uniform(
            (self.uniforms_per_sample, params.shape[0]),
            generator,
            device=params.device,
            dtype=self.sample_dtype(params.dtype),
        )
        return self.sample_from_uniforms(params, u)

    @staticmethod
    def sample_dtype(dtype: torch.dtype) -> torch.dtype:
        """The dtype of the uniforms drawn for parameters of ``dtype`` (float32 at least)."""
        return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype

    def encode_into(self, values: torch.Tensor, out: torch.Tensor) -> None:
        """Write one variable's values ``(N,)``, encoded as ``encode`` encodes a variable,
        into ``out`` ``(input_width, N)`` (a sampler's inputs, units by samples)."""
        out.copy_(self.encode(values[:, None], out.dtype).t())

    def encode_variable_into(self, values: torch.Tensor, out: torch.Tensor, variable: int) -> None:
        """``encode_into`` for variable ``variable`` (``out`` is ``(W_i, N)``): what
        the fast sampler calls. The default ignores the variable; a head with
        per-variable widths overrides it."""
        self.encode_into(values, out)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_values={self.num_values}"


_CHECK_CHUNK = 1 << 20
"""Values checked against a support per ``check`` call (bounds the temporaries)."""


def _is_integer(x: torch.Tensor) -> bool:
    return x.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def _integer_bounds(support: constraints.Constraint) -> tuple[int, int] | None:
    """``(low, high)`` of a support that is exactly the integers ``low..high``, else ``None``."""
    if support is constraints.boolean:
        return 0, 1
    if isinstance(support, constraints.integer_interval):
        low, high = support.lower_bound, support.upper_bound
        if isinstance(low, int) and isinstance(high, int):
            return low, high
    return None


def float32_at_least(params: torch.Tensor) -> torch.Tensor:
    """Upcast half-precision parameters so likelihood arithmetic runs in float32."""
    if params.dtype in (torch.float16, torch.bfloat16):
        return params.float()
    return params
