"""Recommended training settings: named presets, and each data set's default one by head.

A preset is a small dict of settings: fields of [`ModelConfig`][densitykit.model.ModelConfig]
(``hidden_sizes``, ``direct_connections``, ``masks``, ``num_masks``, ``head_options``, ...),
fields of [`TrainConfig`][densitykit.train.TrainConfig] (``lr``, ``epochs``, ``patience``,
...) and ``data_options``. Settings are chosen in this order, the first that says wins:

1. what the user gives (a flag typed on the command line, a keyword in Python);
2. the preset (``--preset NAME``, else the data set's default for its head);
3. the library defaults of the config classes.

``densitykit fit --data NAME [--head HEAD]`` with no other option so reaches the quality
the docs state for that pair, and the run's ``config.json`` records every setting used.
Registering a preset is one line:

    register_preset("my-images", {"hidden_sizes": (500,), "direct_connections": True},
                    description="...", datasets=["mnist"], heads=["bernoulli"])

A data set loaded from a file ([`densitykit.data.files`][densitykit.data.files]) finds
its default by kind, under the key ``file:<kind>`` (``file:1d``, ``file:image``, ...).

Example:
    >>> config = recommended_config("1d-bimodal", head="histogram")
    >>> config.train.lr, config.train.epochs, config.model.head
    (0.05, 300, 'histogram')
"""

from __future__ import annotations

import copy
import inspect
import logging
from collections.abc import Callable, Iterable
from dataclasses import fields, replace
from typing import Any

from densitykit.data.registry import DATASETS
from densitykit.model import ModelConfig
from densitykit.registry import Registry
from densitykit.runs import DataConfig, RunConfig
from densitykit.train import TrainConfig

__all__ = [
    "DEFAULTS",
    "MODEL_SETTINGS",
    "PRESETS",
    "TRAIN_SETTINGS",
    "apply_preset",
    "default_preset",
    "describe_settings",
    "get_preset",
    "recommend",
    "recommended_config",
    "register_preset",
]

MODEL_SETTINGS: frozenset[str] = frozenset(
    f.name for f in fields(ModelConfig) if f.name not in ("dim", "num_values")
)
"""The model settings a preset may hold (``head`` included, for a named preset)."""
TRAIN_SETTINGS: frozenset[str] = frozenset(f.name for f in fields(TrainConfig))
"""The training settings a preset may hold."""

PRESETS: Registry[Callable[[], dict[str, Any]]] = Registry("preset")
"""Every named preset: ``PRESETS.get(name)()`` returns a fresh copy of its settings."""
_LOG = logging.getLogger("densitykit")
DEFAULTS: dict[tuple[str, str | None], str] = {}
"""Default preset by ``(data set, head)``; head ``None`` is for runs that name no head."""


def _check(name: str, settings: dict[str, Any]) -> dict[str, Any]:
    allowed = MODEL_SETTINGS | TRAIN_SETTINGS | {"data_options"}
    unknown = sorted(set(settings) - allowed)
    if unknown:
        raise ValueError(
            f"preset {name!r}: unknown settings {unknown}; a preset holds model settings "
            f"({', '.join(sorted(MODEL_SETTINGS))}), training settings "
            f"({', '.join(sorted(TRAIN_SETTINGS))}) and data_options"
        )
    for key in ("data_options", "head_options", "mask_options"):
        if key in settings and not isinstance(settings[key], dict):
            raise TypeError(f"preset {name!r}: {key} must be a dict, got {settings[key]!r}")
    return copy.deepcopy(settings)


def register_preset(
    name: str,
    settings: dict[str, Any],
    *,
    description: str,
    datasets: Iterable[str] = (),
    heads: Iterable[str | None] = (None,),
) -> None:
    """Register preset ``name`` and make it the default of ``datasets`` for ``heads``.

    Args:
        name: The preset's name (``--preset NAME``).
        settings: Model and training settings, and ``data_options``.
        description: One line for ``densitykit datasets``.
        datasets: Data set names (or ``file:<kind>``) that get it by default.
        heads: For which heads; ``None`` means a run that names no head.

    Raises:
        DuplicateNameError: If ``name`` is taken.
        ValueError: On a setting no config has.
    """
    frozen = _check(name, settings)
    PRESETS.register(name, lambda: copy.deepcopy(frozen), description=description)
    for dataset in datasets:
        for head in heads:
            recommend(dataset, name, head=head)


def recommend(dataset: str, preset: str, *, head: str | None = None) -> None:
    """Make ``preset`` the default of ``dataset`` with ``head`` (replacing any before)."""
    PRESETS.get(preset)
    DEFAULTS[(dataset, head)] = preset


def get_preset(name: str) -> dict[str, Any]:
    """A copy of preset ``name``'s settings.

    Raises:
        UnknownNameError: If no preset has that name (the message lists them).
    """
    return PRESETS.get(name)()


def default_preset(dataset: str, head: str | None = None) -> str | None:
    """The default preset name of ``dataset`` for ``head`` (``None``: the data's default
    head), or ``None`` when the library defaults suit it."""
    return DEFAULTS.get((dataset, head))


def apply_preset(
    config: RunConfig,
    settings: dict[str, Any],
    *,
    given: Iterable[str] = (),
    given_data_options: Iterable[str] = (),
) -> RunConfig:
    """Fill ``config`` with ``settings`` except where the user gave a value.

    Args:
        config: The run's config, holding the user's values and the library defaults.
        settings: A preset's settings.
        given: Model and training fields the user set (they keep their value).
        given_data_options: Data options the user set.

    Returns:
        A new config. ``head_options``, ``mask_options`` and ``data_options`` are merged
        key by key, the user's keys winning. A preset's data option that the data set
        does not take (``resample`` on ``shapes``) is left out with a note on the
        ``densitykit`` logger, so a preset's model and training settings serve other
        data sets too.
    """
    given = set(given)
    model_updates: dict[str, Any] = {}
    train_updates: dict[str, Any] = {}
    for key, value in settings.items():
        if key in given:
            continue
        if key in ("head_options", "mask_options"):
            model_updates[key] = {**value, **getattr(config.model, key)}
        elif key in MODEL_SETTINGS:
            model_updates[key] = tuple(value) if key == "hidden_sizes" else value
        elif key in TRAIN_SETTINGS:
            train_updates[key] = value
    kept = set(given_data_options)
    data_options = dict(config.data.options)
    takes = _data_options_taken(config.data.name)
    for key, value in settings.get("data_options", {}).items():
        if key in kept:
            continue
        if takes is not None and key not in takes:
            _LOG.warning(
                "the preset's data option %s=%r is left out: data set %r takes no %r",
                key,
                value,
                config.data.name,
                key,
            )
            continue
        data_options[key] = value
    return replace(
        config,
        data=replace(config.data, options=data_options),
        model=replace(config.model, **model_updates),
        train=replace(config.train, **train_updates),
    )


def _data_options_taken(name: str) -> frozenset[str] | None:
    """The keyword options data set ``name``'s factory takes (``None``: any, or unknown)."""
    if name not in DATASETS.names():
        return None
    parameters = inspect.signature(DATASETS.get(name)).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return frozenset(p.name for p in parameters)


def recommended_config(
    data: str,
    head: str | None = None,
    *,
    preset: str | None = None,
    data_options: dict[str, Any] | None = None,
    **overrides: Any,
) -> RunConfig:
    """A run config for ``data`` (and ``head``) with its recommended settings.

    Args:
        data: A data set name.
        head: A head name, or ``None`` for the data's default.
        preset: A preset name instead of the data set's default.
        data_options: The data set's options (the user's win over the preset's).
        **overrides: Model or training fields (``lr=...``, ``hidden_sizes=...``) that win.

    Raises:
        ValueError: On an override no config has.
    """
    unknown = sorted(set(overrides) - MODEL_SETTINGS - TRAIN_SETTINGS)
    if unknown:
        raise ValueError(f"unknown settings {unknown}; expected model or training fields")
    model = ModelConfig(
        head=head, **{k: v for k, v in overrides.items() if k in MODEL_SETTINGS and k != "head"}
    )
    train = TrainConfig(**{k: v for k, v in overrides.items() if k in TRAIN_SETTINGS})
    config = RunConfig(DataConfig(data, dict(data_options or {})), model, train)
    name = preset or default_preset(data, head)
    if name is None:
        return config
    return apply_preset(
        config, get_preset(name), given=set(overrides), given_data_options=set(data_options or {})
    )


def describe_settings(settings: dict[str, Any]) -> str:
    """One line of ``key=value`` pairs, as ``densitykit datasets`` prints them.

    Example:
        >>> describe_settings({"lr": 0.05, "hidden_sizes": (), "data_options": {"val_fraction": 0}})
        'lr=0.05, hidden_sizes=none, val_fraction=0'
    """
    parts = []
    for key, value in settings.items():
        if isinstance(value, dict):
            parts += [f"{k}={v}" for k, v in value.items()]
        elif key == "hidden_sizes":
            parts.append(f"hidden_sizes={','.join(map(str, value)) or 'none'}")
        else:
            parts.append(f"{key}={value}")
    return ", ".join(parts)


# -- the built-in recommendations ----------------------------------------------------------
# The 1-D settings are those that reached the course's figures on the benchmarks page
# (benchmarks/reproductions.py): a fast learning rate, long training with patient early
# stopping, and no hidden layer where the head has weights to learn (with one variable a
# hidden unit could feed no output). The course's own sets train on the whole 80 %, as the
# course does; a user's file keeps a validation split. The image settings are the
# benchmarks page's MNIST and shapes recipe.
_ONE_D = {"epochs": 300, "patience": 30}
_NO_HIDDEN = {"hidden_sizes": ()}
_COURSE = {"data_options": {"val_fraction": 0.0}}  # train on the course's whole 80 %
_MIXTURE = {"lr": 0.02, "head_options": {"num_components": 4}}

# A file's head is always resolved before the look-up, so its defaults need no None key.
for _prefix, _extra, _datasets, _default, _what in (
    ("1d", {}, ["file:1d"], [], "One variable"),
    ("course-1d", _COURSE, ["1d-gaussian", "1d-bimodal"], [None], "CS294-158 1-D sets (all 80 %)"),
):
    register_preset(
        f"{_prefix}-histogram",
        {**_ONE_D, "lr": 0.05, **_extra},
        description=f"{_what}, histogram head: lr 0.05, 300 epochs, patience 30.",
        datasets=_datasets,
        heads=["histogram"],
    )
    register_preset(
        f"{_prefix}-categorical",
        {**_ONE_D, **_NO_HIDDEN, "lr": 0.05, **_extra},
        description=f"{_what}, categorical head: no hidden layer, lr 0.05, 300 epochs.",
        datasets=_datasets,
        heads=[*_default, "categorical"],
    )
    register_preset(
        f"{_prefix}-logistic-mixture",
        {**_ONE_D, **_NO_HIDDEN, **_MIXTURE, **_extra},
        description=f"{_what}, logistic mixture of 4: no hidden layer, lr 0.02, 300 epochs.",
        datasets=_datasets,
        heads=["logistic-mixture"],
    )

register_preset(
    "made-images",
    {"hidden_sizes": (512, 512), "epochs": 20, "patience": 20},
    description="Binary images: two hidden layers of 512, 20 epochs, patience 20.",
    datasets=["shapes", "mnist", "fashion-mnist"],
    heads=[None, "bernoulli"],
)
recommend("file:image", "made-images", head="bernoulli")

# The binarized-MNIST benchmark's cpu-best recipe (docs/binarized-mnist.md): one wide layer
# in natural order with direct connections and dropout, Adam with L2 weight decay, the
# weight average validated and kept, patient enough to stop at the validation minimum
# (about 13-18 epochs).
register_preset(
    "binarized-mnist",
    {
        "hidden_sizes": (4000,),
        "direct_connections": True,
        "masks": "natural",
        "num_masks": 1,
        "lr": 1e-3,
        "weight_decay": 1e-4,
        "batch_size": 100,
        "epochs": 300,
        "patience": 5,
        "dropout": 0.1,
        "ema_decay": 0.999,
    },
    description="Binarized MNIST, cpu-best: 784-4000-784, direct connections, dropout 0.1, "
    "Adam 1e-3, weight decay 1e-4, weight average 0.999, patience 5 (test 87.66 nats).",
    datasets=["binarized-mnist"],
    heads=[None, "bernoulli"],
)

# The binarized-MNIST benchmark's wide-resample recipe (docs/binarized-mnist.md): a
# 16,000-unit layer trained with dynamic binarization (a fresh Bernoulli draw of the
# training images every epoch), which keeps the wide layer from overfitting; stopped by a
# wall-time budget of 105 minutes. It takes grey images: binarized-mnist, or mnist and
# fashion-mnist with binarize='stochastic'.
register_preset(
    "binarized-mnist-resample",
    {
        "hidden_sizes": (16000,),
        "direct_connections": True,
        "masks": "natural",
        "num_masks": 1,
        "lr": 1e-3,
        "weight_decay": 1e-4,
        "batch_size": 100,
        "epochs": 300,
        "patience": 6,
        "dropout": 0.2,
        "ema_decay": 0.999,
        "time_budget_minutes": 105.0,
        "data_options": {"resample": True},
    },
    description="Binarized MNIST, dynamic binarization: 784-16000-784, direct connections, "
    "dropout 0.2, a fresh draw of the training images every epoch, Adam 1e-3, weight decay "
    "1e-4, weight average 0.999, 105 minutes (test 84.08 nats, measured with one thread).",
)
