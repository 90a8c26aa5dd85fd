"""Exceptions raised by densitykit.

Every library error derives from [`DensitykitError`][densitykit.errors.DensitykitError]
and from the built-in exception a caller would naturally catch (`ValueError`,
`KeyError`, ...), so ``except ValueError`` keeps working. What a message shows on a
terminal goes through [`printable`][densitykit.errors.printable].
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "DataError",
    "DensitykitError",
    "DuplicateNameError",
    "PluginError",
    "ResourceError",
    "RunFolderError",
    "TrainingError",
    "UnknownNameError",
    "UnknownOptionError",
    "printable",
]


class DensitykitError(Exception):
    """Base class of every error densitykit raises on purpose."""


class UnknownNameError(DensitykitError, ValueError):
    """A name was looked up in a registry that does not hold it."""


class UnknownOptionError(DensitykitError, TypeError, ValueError):
    """A registered factory was given a keyword option it does not take.

    A ``TypeError``, as Python raises for an unexpected keyword argument, and a
    ``ValueError``, as for any other bad option.
    """


class DuplicateNameError(DensitykitError, ValueError):
    """A name was registered twice in the same registry."""


class DataError(DensitykitError, ValueError):
    """A data set could not be found, read or understood."""


class CheckpointError(DensitykitError, ValueError):
    """A checkpoint or run folder is missing, corrupted, unsafe or inconsistent."""


class TrainingError(DensitykitError, RuntimeError):
    """Training could not go on (for example, the loss stopped being finite)."""


class ResourceError(DensitykitError, ValueError):
    """A request needs more memory or disk than there is (refused before allocating)."""


class PluginError(DensitykitError, ValueError):
    """A plug-in cannot be imported, or a run needs one that was not given."""


class RunFolderError(DensitykitError, OSError):
    """A run folder cannot be created, replaced or written (nothing was deleted)."""


def printable(text: str) -> str:
    r"""``text`` with every character a terminal would act on shown as its escape.

    Messages name user paths and values: a folder named with an escape sequence would
    otherwise retitle or clear the terminal, and a newline would cut the message. Control
    and format characters (``\x1b``, ``\n``, ``\u202e``, ...) and undecodable bytes of a
    file name are shown as Python writes them in a string; letters of every script
    (``é``), spaces, quotes and backslashes are kept as they are.

    Args:
        text: A message, or a piece of one.

    Returns:
        The text on one line, with nothing a terminal interprets.

    Example:
        >>> print(printable("runs/café\x1b]0;pwned\x07\x1b[2J\nx"))
        runs/café\x1b]0;pwned\x07\x1b[2J\nx
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
