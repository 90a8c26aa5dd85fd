"""The generic registry: registration, lookup, errors."""

from __future__ import annotations

import pytest

import densitykit as dk
from densitykit.registry import Registry


def test_register_create_names_describe() -> None:
    registry: Registry = Registry("thing")

    @registry.register("b")
    def make_b(size: int = 1) -> list:
        """Makes a list of b.

        More text."""
        return ["b"] * size

    registry.register("a", lambda: "a", description="an a")
    assert registry.names() == ["a", "b"]
    assert registry.create("b", size=2) == ["b", "b"]
    assert registry.describe("b") == "Makes a list of b."
    assert registry.describe("a") == "an a"
    assert "a" in registry and len(registry) == 2 and list(registry) == ["a", "b"]
    assert make_b(size=1) == ["b"]  # the decorator returns the factory unchanged


def test_duplicate_names_are_refused() -> None:
    registry: Registry = Registry("thing")
    registry.register("x", lambda: 1)
    with pytest.raises(dk.DuplicateNameError, match="'x' is already registered"):
        registry.register("x", lambda: 2)
    assert registry.create("x") == 1


def test_unknown_name_lists_the_registered_ones() -> None:
    with pytest.raises(dk.UnknownNameError) as info:
        dk.heads.create("student-t", dim=1, num_values=2)
    message = str(info.value)
    for name in dk.heads.names():
        assert repr(name) in message
    assert isinstance(info.value, ValueError)
    with pytest.raises(dk.UnknownNameError, match="'natural'"):
        dk.masks.create("zigzag", dim=2)


def test_bad_registrations() -> None:
    registry: Registry = Registry("thing")
    with pytest.raises(TypeError, match="non-empty string"):
        registry.register("", lambda: 1)
    with pytest.raises(TypeError, match="callable"):
        registry.register("y", 3)  # type: ignore[call-overload]
    with pytest.raises(dk.UnknownNameError):
        registry.unregister("y")


def test_unknown_options_name_the_options_the_factory_takes() -> None:
    with pytest.raises(dk.UnknownOptionError) as info:
        dk.create_model("categorical", 3, 4, num_components=2)
    assert str(info.value) == (
        "head 'categorical' takes no option 'num_components'; it takes: one_hot"
    )
    assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)
    with pytest.raises(ValueError, match="takes no options 'colour', 'size'; it takes: no options"):
        dk.heads.create("histogram", dim=1, num_values=2, colour=1, size=2)
    assert dk.heads.HEADS.options("logistic-mixture") == ["num_components", "one_hot"]
    # A known option still works (the positive case of the same path).
    assert dk.create_model("logistic-mixture", 2, 4, num_components=2).head.num_components == 2


def test_factories_taking_any_keyword_are_not_second_guessed() -> None:
    registry: Registry = Registry("thing")
    registry.register("free", lambda **options: sorted(options))
    assert registry.create("free", a=1, b=2) == ["a", "b"]
    assert registry.options("free") == []
