"""Inpainting on any model that answers conditional queries: patterns, scores, completions.

The three steps of an inpainting experiment, written once for the command line
(``densitykit eval --observed``, ``densitykit inpaint``) and the benchmarks:

* [`observed_pattern_from_spec`][densitykit.inpainting.observed_pattern_from_spec]: which
  variables are observed, by name (``top-half``, ``random:0.5``, see
  [`queries.observed_pattern`][densitykit.queries.observed_pattern]) or from a PNG picture;
* [`conditional_nll`][densitykit.inpainting.conditional_nll]: $-\\log p(x_m \\mid x_o)$ per
  example, in batches;
* [`complete_images`][densitykit.inpainting.complete_images]: a few completions of each image
  and the rows of their picture (observed part, completions, original).

A model is asked through its family's queries (``conditional_log_prob`` and ``complete``
with the ``connectivities=`` and ``context=`` keywords): the MADE and the orderless family
answer them; check ``"complete" in model.capabilities`` first for another family.

Example:
    >>> import torch, densitykit as dk
    >>> model = dk.create_model("bernoulli", 4, hidden_sizes=(8,), masks="any-order")
    >>> x = torch.tensor([[1, 0, 1, 1], [0, 0, 1, 0]])
    >>> observed = observed_pattern_from_spec("top-half", (2, 2), 2)
    >>> conditional_nll(model, x, observed).shape
    torch.Size([2])
    >>> completed, rows = complete_images(model, x, observed, 3,
    ...                                   generator=torch.Generator().manual_seed(0))
    >>> completed.shape, rows.shape
    (torch.Size([6, 4]), torch.Size([10, 4]))
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from densitykit.plots import completion_rows
from densitykit.queries import observed_pattern

__all__ = ["complete_images", "conditional_nll", "observed_pattern_from_spec"]


def observed_pattern_from_spec(
    spec: str,
    image_shape: Sequence[int],
    num_examples: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The observed variables of ``num_examples`` images: ``(N, D)`` bool.

    Args:
        spec: A pattern name (``top-half``, ``bottom-half``, ``left-half``,
            ``right-half``, ``random:F``; see
            [`queries.observed_pattern`][densitykit.queries.observed_pattern]), or the path
            of a PNG of the images' size whose light pixels (grey level 128 or more) are
            the observed ones, the same for every image.
        image_shape: The images' shape ``(height, width)``.
        num_examples: How many rows.
        generator: Draws ``random:F`` (a new pattern per image).

    Raises:
        ValueError: On an unknown name, a picture of another size, one that cannot be
            read, or one that is all light or all dark.
        FileNotFoundError: If the picture does not exist.

    Example:
        >>> observed_pattern_from_spec("left-half", (2, 2), 1).int().tolist()
        [[1, 0, 1, 0]]
    """
    if not spec.lower().endswith(".png"):
        return observed_pattern(spec, image_shape, num_examples, generator=generator)
    shape = tuple(int(side) for side in image_shape)
    path = Path(spec)
    if len(shape) != 2:
        raise ValueError(f"a pattern picture needs image data (height, width), got {shape}")
    if not path.is_file():
        raise FileNotFoundError(f"no pattern picture at {path}")
    try:
        with Image.open(path) as picture:  # the header first: no decoding of a huge file
            width, height = picture.size
            if (height, width) != shape:
                raise ValueError(
                    f"the pattern picture {path} is {height} x {width} pixels (height x width), "
                    f"but the images are {shape[0]} x {shape[1]}"
                )
            grey = np.asarray(picture.convert("L"))
    except (UnidentifiedImageError, Image.DecompressionBombError) as error:
        raise ValueError(f"cannot read {path} as a picture ({error})") from None
    observed = torch.from_numpy(grey >= 128).reshape(1, -1)
    if bool(observed.all()) or not bool(observed.any()):
        raise ValueError(
            f"the pattern picture {path} must have light (observed) and dark (missing) pixels"
        )
    return observed.expand(num_examples, -1)


def conditional_nll(
    model: Any,
    data: torch.Tensor,
    observed: torch.Tensor,
    *,
    context: torch.Tensor | None = None,
    connectivities: Any = None,
    batch_size: int = 1000,
) -> torch.Tensor:
    """``-log p(x_missing | x_observed)`` per example ``(N,)`` in nats, on the CPU.

    Args:
        model: A model whose family answers ``conditional_log_prob`` (the MADE, the
            orderless model).
        data: ``(N, D)`` values, the missing ones included (they are scored).
        observed: ``(N, D)`` or ``(D,)`` bool, True where observed.
        context: ``(N, ...)`` per-example context of a conditional model (the labels).
        connectivities: What the model mixes over (its masks, orderings); ``None`` for
            its own mixture.
        batch_size: Examples per forward pass.

    Raises:
        ValueError: If ``batch_size`` is not a positive integer (and as the model's
            query does, on values or patterns that do not fit it).

    Example:
        >>> import torch, densitykit as dk
        >>> model = dk.create_model("bernoulli", 3, hidden_sizes=(8,))
        >>> nll = conditional_nll(model, torch.ones(5, 3), torch.tensor([True, False, False]),
        ...                       batch_size=2)
        >>> nll.shape, bool((nll >= 0).all())
        (torch.Size([5]), True)
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    parts = []
    with torch.no_grad():
        for start in range(0, data.shape[0], batch_size):
            chunk = slice(start, start + batch_size)
            parts.append(
                -model.conditional_log_prob(
                    data[chunk],
                    observed[chunk] if observed.dim() == 2 else observed,
                    connectivities=connectivities,
                    context=None if context is None else context[chunk],
                ).cpu()
            )
    return torch.cat(parts) if parts else torch.zeros(0)


def complete_images(
    model: Any,
    images: torch.Tensor,
    observed: torch.Tensor,
    num_samples: int,
    *,
    generator: torch.Generator | None = None,
    context: torch.Tensor | None = None,
    connectivities: Any = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``num_samples`` completions of each image's missing part, and the picture's rows.

    Args:
        model: A model whose family answers ``complete``.
        images: ``(N, D)`` originals.
        observed: ``(N, D)`` bool, True where observed.
        num_samples: Completions per image.
        generator: Draws the completions.
        context: ``(N, ...)`` per-image context of a conditional model (the labels).
        connectivities: What the model mixes over; ``None`` for its own mixture.

    Returns:
        The completions ``(N * num_samples, D)`` (those of each image together, on the
        CPU) and the rows of [`plots.completion_rows`][densitykit.plots.completion_rows]
        ``(N * (num_samples + 2), D)``: per image its observed part (NaN where missing),
        its completions and the original, for
        [`plots.sample_grid`][densitykit.plots.sample_grid] with ``columns=num_samples + 2``.

    Example:
        >>> import torch, densitykit as dk
        >>> model = dk.create_model("bernoulli", 2, hidden_sizes=(4,))
        >>> completed, rows = complete_images(model, torch.tensor([[1, 0]]),
        ...                                   torch.tensor([[True, False]]), 2)
        >>> completed[:, 0].tolist(), rows.shape
        ([1, 1], torch.Size([4, 2]))
    """
    completed = model.complete(
        images.repeat_interleave(num_samples, 0),
        observed.repeat_interleave(num_samples, 0),
        generator=generator,
        context=None if context is None else context.repeat_interleave(num_samples, 0),
        connectivities=connectivities,
    ).cpu()
    return completed, completion_rows(images, observed, completed)
