"""Devices and precisions: which device a run uses and how it computes there.

Written once at the floor: the training loop, the data-parallel glue and run loading
all resolve devices here.

Example:
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> resolve_device("tpu")
    Traceback (most recent call last):
    ...
    ValueError: device must be 'auto', 'cpu' or 'cuda[:N]', got 'tpu'
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

__all__ = ["PRECISIONS", "autocast", "check_device_name", "resolve_device"]

PRECISIONS = ("fp32", "bf16", "fp16")
"""Training precisions: float32, or bfloat16 / float16 autocast on CUDA."""


def check_device_name(device: str | torch.device) -> str:
    """Return ``device`` if it names a device densitykit can use, here or elsewhere.

    Unlike [`resolve_device`][densitykit.devices.resolve_device] it does not ask for
    CUDA to be present: a run recorded as trained on ``cuda`` is still a valid run on a
    machine without one (it is evaluated, sampled and scored on the CPU there).

    Raises:
        ValueError: On a name that is not ``auto``, ``cpu`` or ``cuda[:N]``.

    Example:
        >>> check_device_name("cuda:1")
        'cuda:1'
    """
    if str(device) == "auto":
        return "auto"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}") from None
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    return str(device)


def resolve_device(device: str | torch.device) -> torch.device:
    """Turn ``"auto"``/``"cpu"``/``"cuda[:N]"`` into a device, checking CUDA is there.

    Raises:
        ValueError: On an unknown name, or ``cuda`` without a CUDA device.
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but CUDA is not available here")
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    return resolved


def autocast(device: torch.device, precision: str) -> AbstractContextManager:
    """The autocast context of ``precision`` on ``device`` (none for fp32 or off CUDA).

    Example:
        >>> with autocast(torch.device("cpu"), "bf16"):  # autocast is CUDA-only here
        ...     torch.ones(2).dtype
        torch.float32
    """
    if precision == "fp32" or device.type != "cuda":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast("cuda", dtype=dtype)
