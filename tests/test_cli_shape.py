"""The shape of the command line and the library: each option declared once, `fit --help`
in panels that list the registered names, no state kept in the CLI module between
invocations, no function over 100 lines."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from densitykit import cli
from densitykit.family import FAMILIES
from densitykit.heads import HEADS
from densitykit.plugins import REGISTRIES

REPO = Path(__file__).resolve().parents[1]
CLI = REPO / "densitykit" / "cli.py"
MAX_FUNCTION_LINES = 100

runner = CliRunner()


def _type_name(param) -> str:
    """The value type of a click option (typer >= 0.2x keeps it in a type descriptor)."""
    if hasattr(param, "type_descriptor"):
        return str(param.type_descriptor.annotation)
    return param.type.name


def _declarations(command) -> dict[str, tuple]:
    """Each option of a click command by its first flag: (help, type name, flags)."""
    declared = {}
    for param in command.params:
        if param.param_type_name != "option" or param.name == "help":
            continue
        key = sorted(param.opts, key=len)[-1]
        declared[key] = (param.help, _type_name(param), tuple(sorted(param.opts)))
    return declared


def _commands() -> dict[str, object]:
    group = typer.main.get_command(cli.app)
    return dict(group.commands)


# -- each option declared once ------------------------------------------------------------
def test_options_of_the_same_name_are_one_declaration() -> None:
    """An option several commands take (``--plugin``, ``--device``, ``--seed``,
    ``--overwrite``, ``--json``, ...) has the same help, type and flags everywhere."""
    seen: dict[str, tuple[str, tuple]] = {}
    different = []
    for name, command in _commands().items():
        for flag, declaration in _declarations(command).items():
            first = seen.setdefault(flag, (name, declaration))
            if first[1] != declaration:
                different.append(f"{flag}: {first[0]} {first[1]} != {name} {declaration}")
    assert not different, "\n".join(different)
    shared = [
        flag for flag in seen if sum(flag in _declarations(c) for c in _commands().values()) > 1
    ]
    assert {"--plugin", "--device", "--seed", "--overwrite", "--json", "--out"} <= set(shared)


def _option_calls(source: str) -> list[ast.Call]:
    calls = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "typer"
            and node.func.attr in ("Option", "Argument")
        ):
            calls.append(node)
    return calls


def _declared_twice(source: str) -> list[str]:
    """The flags and help texts that more than one ``typer.Option``/``Argument`` declares."""
    counts: dict[str, int] = {}
    for call in _option_calls(source):
        keys = {arg.value for arg in call.args if isinstance(arg, ast.Constant)}
        for keyword in call.keywords:
            if keyword.arg == "help":
                keys.add("help: " + ast.unparse(keyword.value))
        for key in keys:
            counts[key] = counts.get(key, 0) + 1
    return sorted(key for key, count in counts.items() if count > 1)


def test_no_flag_or_help_text_is_declared_twice_in_the_source() -> None:
    assert _declared_twice(CLI.read_text()) == []
    plugin_help = "Module or .py file to import first"
    assert CLI.read_text().count(plugin_help) == 1


def test_the_source_check_can_fail() -> None:
    twice = """
import typer
a = typer.Option("--out", help="Where.")
b = typer.Option("--out", help="Where.")
"""
    assert _declared_twice(twice) == ["--out", "help: 'Where.'"]


# -- fit --help in panels, with the registered names ----------------------------------------
def test_fit_help_is_grouped_into_panels_and_lists_the_names() -> None:
    result = runner.invoke(cli.app, ["fit", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # the help wraps; compare without the breaks
    for panel in ("Data", "Model", "Training", "Output", "Runtime"):
        assert re.search(rf"─ {panel} ─", result.output), panel
    names = {
        "--family": FAMILIES.names(),
        "--head": HEADS.names(),
        "--masks": REGISTRIES["mask builder"].names(),
        "--activation": REGISTRIES["activation"].names(),
    }
    for flag, registered in names.items():
        assert registered, flag
        for name in registered:
            assert name in text, (flag, name)
    assert "a --plugin may register more" in text


def test_the_panels_put_options_where_they_belong() -> None:
    options = {param.name: param for param in _commands()["fit"].params if param.name != "help"}
    panels = {name: getattr(param, "rich_help_panel", None) for name, param in options.items()}
    assert panels["data"] == "Data" and panels["binarize"] == "Data"
    assert panels["head"] == "Model" and panels["masks"] == "Model"
    assert panels["lr"] == "Training" and panels["epochs"] == "Training"
    assert panels["out"] == "Output" and panels["quiet"] == "Output"
    assert panels["device"] == "Runtime" and panels["plugin"] == "Runtime"
    unplaced = [name for name, panel in panels.items() if panel is None and name != "resume"]
    assert unplaced == []


# -- no state in the CLI module ------------------------------------------------------------
def _module_level_mutables(source: str) -> list[str]:
    """Module-level names bound to a dict, list or set display (or a call making one)."""
    found = []
    for node in ast.parse(source).body:
        targets, value = [], None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        mutable = isinstance(value, ast.Dict | ast.List | ast.Set) or (
            isinstance(value, ast.Call)
            and isinstance(value.func, ast.Name)
            and value.func.id in ("dict", "list", "set")
        )
        if mutable:
            found += [ast.unparse(target) for target in targets]
    return found


def test_the_cli_keeps_no_mutable_state_in_the_module() -> None:
    """Settings of an invocation (``--debug``, the warnings a command caught, the options
    typed) live in click's context; only constant tables stay at module level."""
    source = CLI.read_text()
    assert "_state" not in source
    constant_tables = {"__all__", "_FIELDS", "_NAMED_DATA_OPTIONS", "_FAMILY_FIELDS"}
    assert set(_module_level_mutables(source)) <= constant_tables
    assert _module_level_mutables('_state: dict = {"debug": False}\n') == ["_state"]


def test_debug_does_not_outlive_its_invocation(tmp_path: Path) -> None:
    """``--debug`` belongs to one invocation: the next one prints the one-line error."""
    missing = str(tmp_path / "nope")
    with pytest.raises(Exception):  # noqa: B017 - any library error, raised as is
        runner.invoke(cli.app, ["--debug", "eval", missing], catch_exceptions=False)
    result = runner.invoke(cli.app, ["eval", missing], catch_exceptions=False)
    assert result.exit_code == 1 and result.output.startswith("error: ")


# -- no function over 100 lines -------------------------------------------------------------
def _long_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    return [
        f"{path.relative_to(REPO)}:{node.lineno} {node.name} "
        f"({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]


def test_no_function_of_the_library_is_over_100_lines() -> None:
    files = sorted((REPO / "densitykit").glob("*.py")) + sorted(
        (REPO / "densitykit").glob("*/*.py")
    )
    assert len(files) > 20
    long = [entry for path in files for entry in _long_functions(path)]
    assert long == []


def test_the_length_check_can_fail(tmp_path: Path) -> None:
    path = REPO / "tests" / "_long_function_probe.py"
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    path.write_text(f"def long():\n{body}\n")
    try:
        assert _long_functions(path) == ["tests/_long_function_probe.py:1 long (101 lines)"]
    finally:
        path.unlink()
