"""Griffe extension used by the docs build (``mkdocs.yml``); it changes no library code.

It bridges three gaps between how densitykit's docstrings read at run time
(``help(...)``) and what Griffe sees statically:

* ``Example:`` headings. The Google style guide (and densitykit) write ``Example:``;
  Griffe only parses ``Examples:`` as an examples section and renders the
  singular as prose, doctests included. The heading is renamed before parsing.
* Inherited docstrings. A method that overrides a documented one without a
  docstring of its own (``BernoulliHead.log_prob`` overriding ``Head.log_prob``)
  shows the base docstring, as ``inspect.getdoc`` does.
* Registry shortcuts. ``create = HEADS.create`` is a bound method at run time and
  has the method's docstring; statically it is a bare attribute. Exported
  attributes that are bound methods get that docstring's summary and a link to
  the method.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Iterator
from typing import Any

import griffe

_EXAMPLE_HEADING = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)


def _walk(obj: griffe.Object) -> Iterator[griffe.Object]:
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)


def _docstring(value: str, member: griffe.Object, loader: griffe.GriffeLoader) -> griffe.Docstring:
    """A docstring for ``member`` parsed like the loader's own (Google style here)."""
    return griffe.Docstring(
        value,
        lineno=member.lineno,
        parent=member,
        parser=loader.docstring_parser,
        parser_options=loader.docstring_options,
    )


def _inherit(cls: griffe.Class, loader: griffe.GriffeLoader) -> None:
    try:
        ancestors = cls.mro()
    except Exception:  # a base outside the loaded packages (torch.nn.Module)
        return
    for name, member in cls.members.items():
        if member.is_alias or not member.is_function or member.docstring is not None:
            continue
        for ancestor in ancestors:
            base = ancestor.members.get(name)
            if base is not None and not base.is_alias and base.docstring is not None:
                member.docstring = _docstring(base.docstring.value, member, loader)
                break


def _document_shortcuts(module: griffe.Module, loader: griffe.GriffeLoader) -> None:
    exports = module.exports or []
    if not exports:
        return
    runtime = importlib.import_module(module.path)
    for name in exports:
        member = module.members.get(name)
        if member is None or member.is_alias or not member.is_attribute or member.docstring:
            continue
        value = getattr(runtime, name, None)
        doc = inspect.getdoc(value) if inspect.ismethod(value) else None
        if doc:
            # The summary only; the link leads to the method's full documentation.
            summary = doc.split("\n\n")[0]
            owner = type(value.__self__)
            target = f"{owner.__module__}.{owner.__qualname__}.{value.__name__}"
            text = f"{summary}\n\nShortcut for [`{owner.__name__}.{value.__name__}`][{target}]."
            member.docstring = _docstring(text, member, loader)


class DensitykitDocstrings(griffe.Extension):
    """Apply the three fixes above once a package is loaded."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        """Run over every object of ``pkg``."""
        objects = list(_walk(pkg))
        for obj in objects:
            if obj.is_class:
                _inherit(obj, loader)
            elif obj.is_module:
                _document_shortcuts(obj, loader)
        for obj in objects:
            if obj.docstring is not None:
                obj.docstring.value = _EXAMPLE_HEADING.sub(r"\1Examples:", obj.docstring.value)
