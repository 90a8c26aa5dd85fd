"""Plug-ins: user modules that register heads, mask builders, activations or data sets.

A plug-in is imported only when the user asks for it, on the command line
(``--plugin``) or in Python ([`import_plugins`][densitykit.plugins.import_plugins]).
A run folder records the plug-ins it was trained with, but loading a run never
imports them: a config file can be edited by anyone, and importing a file it names
would run that file. A run that needs a name no plug-in has registered yet is
refused with the plug-ins to pass
([`require_registered`][densitykit.plugins.require_registered]).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from densitykit.data import DATASETS
from densitykit.errors import PluginError
from densitykit.family import FAMILIES
from densitykit.heads import HEADS
from densitykit.made import ACTIVATIONS
from densitykit.masks import MASKS
from densitykit.registry import Registry

__all__ = ["REGISTRIES", "import_plugins", "normalize", "require_registered"]

REGISTRIES: dict[str, Registry] = {
    "data set": DATASETS,
    "head": HEADS,
    "mask builder": MASKS,
    "activation": ACTIVATIONS,
    "model family": FAMILIES,
}
"""The registries a run's names are looked up in, by the word used in messages."""


def normalize(plugin: str) -> str:
    """A ``.py`` plug-in by absolute path (so a run records where it came from); a module as is.

    Example:
        >>> normalize("my_package.heads")
        'my_package.heads'
    """
    return str(Path(plugin).resolve()) if plugin.endswith(".py") else plugin


def import_plugins(plugins: Sequence[str]) -> None:
    """Import user modules (dotted names or ``.py`` paths) so their registrations happen.

    Args:
        plugins: Module names or paths of ``.py`` files, as the user gave them.

    Raises:
        PluginError: If a plug-in cannot be imported.
    """
    for plugin in plugins:
        if not isinstance(plugin, str) or not plugin:
            raise PluginError(f"a plug-in is a module name or a .py path, got {plugin!r}")
        try:
            if plugin.endswith(".py"):
                _import_file(Path(plugin).resolve())
            else:
                importlib.import_module(plugin)
        except Exception as error:  # report any import failure as one line
            raise PluginError(f"cannot import plug-in {plugin!r}: {error}") from error


def _import_file(path: Path) -> None:
    name = f"densitykit_plugin_{path.stem}"
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None or not path.is_file():
        raise FileNotFoundError(f"no such file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise


def require_registered(
    needed: Mapping[str, str], recorded: Sequence[str], *, where: str, option: str = "--plugin"
) -> None:
    """Check that every name a run needs is registered, without importing anything.

    Args:
        needed: Registry word (a key of [`REGISTRIES`][densitykit.plugins.REGISTRIES])
            to the name the run uses, e.g. ``{"head": "binomial"}``.
        recorded: The plug-ins the run was trained with (from its config), for the message.
        where: What is being loaded, for the message (the run folder).
        option: How the user passes a plug-in.

    Raises:
        PluginError: If a name is not registered.

    Example:
        >>> require_registered({"head": "bernoulli"}, [], where="runs/demo")
        >>> require_registered({"head": "binomial"}, ["/home/me/binomial.py"], where="runs/demo")
        Traceback (most recent call last):
        ...
        densitykit.errors.PluginError: runs/demo needs head 'binomial', which no imported ...
    """
    for kind, name in needed.items():
        registry = REGISTRIES[kind]
        if name in registry.names():
            continue
        if recorded:
            advice = (
                f"it was trained with the plug-in(s) {', '.join(recorded)}; plug-ins are never "
                f"imported from a run folder: pass "
                + " ".join(f"{option} {plugin}" for plugin in recorded)
                + " to load it"
            )
        else:
            advice = f"registered names: {', '.join(registry.names())}"
        raise PluginError(
            f"{where} needs {kind} {name!r}, which no imported plug-in registers; {advice}"
        )
