"""The documentation site: it builds strictly, and what it says is true to the code.

- ``mkdocs build --strict`` passes (a broken link, reference or missing page fails);
- every public name (``__all__`` of every densitykit module) is rendered in the API
  reference;
- docs/cli.md is what docs/scripts/gen_cli.py writes from the typer app, and names
  every option ``densitykit <command> --help`` shows;
- the ``>>>`` sessions of the pages pass as doctests, and their Python blocks run;
- every registered head, mask builder and data set is described, and the README's
  commands appear on the pages as written.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import inspect
import os
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import densitykit as dk
from densitykit.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

# The modules whose public names the API reference must show (all of them are checked;
# these must at least exist, so a renamed module cannot silently drop out).
REQUIRED_MODULES = [
    "densitykit",
    "densitykit.heads",
    "densitykit.masks",
    "densitykit.data",
    "densitykit.train",
    "densitykit.runs",
    "densitykit.checkpoint",
    "densitykit.plots",
    "densitykit.registry",
    "densitykit.errors",
    "densitykit.layers",
    "densitykit.made",
    "densitykit.model",
]


def _load_script(name: str):
    path = DOCS / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"docs_scripts_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _public_modules() -> dict[str, object]:
    modules = {"densitykit": dk}
    for info in pkgutil.walk_packages(dk.__path__, "densitykit."):
        if info.name.endswith("__main__") or any(p.startswith("_") for p in info.name.split(".")):
            continue
        modules[info.name] = importlib.import_module(info.name)
    return modules


# -- the site builds ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the site once, strictly, into a temporary folder."""
    # No importorskip: the docs tools are in the dev extra, and CI must build the site.
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}{result.stderr}"
    return out


def test_site_builds_strictly(site: Path) -> None:
    pages = ["index", "getting-started/", "api/", "cli/", "scaling-out/", "reliability/"]
    for page in (f"{name}index.html" if name.endswith("/") else f"{name}.html" for name in pages):
        assert (site / page).is_file(), page
    assert not (site / "scripts").exists(), "docs/scripts must not be published"


def test_no_script_comes_from_a_cdn(site: Path) -> None:
    """MathJax is served from the site: mkdocs.yml names no remote script, every page's
    ``<script src>`` is a file of the site, and the maths script is really there."""
    config = (ROOT / "mkdocs.yml").read_text()
    block = re.search(r"^extra_javascript:\n((?:[ \t]+- .*\n?)+)", config, re.MULTILINE)
    assert block, "mkdocs.yml has no extra_javascript list"
    scripts = re.findall(r"- (\S+)", block.group(1))
    assert "javascripts/mathjax/tex-svg.js" in scripts
    assert not [s for s in scripts if "//" in s], f"remote scripts in mkdocs.yml: {scripts}"
    assert (DOCS / "javascripts" / "mathjax" / "LICENSE").is_file()
    pages = list(site.rglob("*.html"))
    assert pages
    for page in pages:
        for src in re.findall(r'<script[^>]*\ssrc="([^"]+)"', page.read_text()):
            assert "//" not in src, f"{page.relative_to(site)} loads a remote script: {src}"
            target = (site / src.lstrip("/")) if src.startswith("/") else (page.parent / src)
            assert target.resolve().is_file(), f"{page.relative_to(site)}: {src} is not in the site"
    mathjax = (site / "javascripts" / "mathjax" / "tex-svg.js").read_text()
    assert "MathJax" in mathjax and len(mathjax) > 1_000_000, "the vendored MathJax is not whole"


def test_every_public_name_is_in_the_api_reference(site: Path) -> None:
    """Each name of each module's ``__all__`` is rendered: under the module itself, under
    a package that re-exports it, or (for a re-export) where it is defined."""
    anchors = set()
    for page in (site / "api").rglob("*.html"):
        anchors.update(re.findall(r'id="(densitykit[\w.]*)"', page.read_text()))
    modules = _public_modules()
    assert set(REQUIRED_MODULES) <= set(modules)
    exporters: dict[int, list[str]] = {}
    for module_name, module in modules.items():
        for name in getattr(module, "__all__", []):
            exporters.setdefault(id(getattr(module, name)), []).append(f"{module_name}.{name}")
    missing = []
    for module_name, module in modules.items():
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            candidates = {f"{module_name}.{name}", *exporters[id(obj)]}
            if inspect.ismodule(obj):
                candidates.add(obj.__name__)
            elif inspect.isclass(obj) or inspect.isfunction(obj):
                candidates.add(f"{obj.__module__}.{obj.__qualname__}")
            if not candidates & anchors:
                missing.append(f"{module_name}.{name}")
    assert not missing, f"not in the API reference (add a ::: block in docs/api/): {missing}"


def test_every_module_has_an_api_page_entry() -> None:
    """Each public module has its own ``:::`` block, or is an implementation module of a
    subpackage whose block renders its names (``densitykit.heads.bernoulli`` through
    ``densitykit.heads``); the top-level package's block renders no submodule."""
    documented = set()
    for page in (DOCS / "api").glob("*.md"):
        documented.update(re.findall(r"^::: ([\w.]+)", page.read_text(), flags=re.MULTILINE))
    undocumented = []
    for name in _public_modules():
        parent = name.rpartition(".")[0]
        if name not in documented and not (parent in documented and parent != "densitykit"):
            undocumented.append(name)
    assert not undocumented, f"modules without an API entry: {undocumented}"


# -- the CLI reference --------------------------------------------------------------------


def test_cli_reference_is_generated_from_the_app() -> None:
    expected = _load_script("gen_cli").render()
    current = (DOCS / "cli.md").read_text()
    assert current == expected, (
        "docs/cli.md is out of date with the typer app; run: python docs/scripts/gen_cli.py"
    )


def test_cli_reference_names_every_option_of_every_help() -> None:
    """Cross-check against what ``densitykit <command> --help`` prints."""
    import typer.main

    page = (DOCS / "cli.md").read_text()
    sections = dict(re.findall(r"^## `(densitykit[\w ]*)`\n(.*?)(?=^## |\Z)", page, re.M | re.S))
    group = typer.main.get_command(app)
    runner = CliRunner()
    for name in [None, *group.commands]:
        title = "densitykit" if name is None else f"densitykit {name}"
        result = runner.invoke(app, ["--help"] if name is None else [name, "--help"])
        assert result.exit_code == 0, result.output
        assert title in sections, f"no section for `{title}` in cli.md"
        cells = re.findall(r"^\| `([^`]*)` \|", sections[title], re.MULTILINE)
        listed = {word for cell in cells for word in re.split(r"[ ,/]+", cell)}
        command = group if name is None else group.commands[name]
        for param in command.params:
            names = [*param.opts, *getattr(param, "secondary_opts", [])]
            for option in (n for n in names if n.startswith("-")):
                assert option in result.output, f"{option} not in `{title} --help`"
                assert option in listed, f"{option} of `{title}` not in cli.md"


# -- the pages' code -----------------------------------------------------------------------

FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
SNIPPET = re.compile(r'^--8<-- "([^"]+)"$', re.MULTILINE)


def python_blocks(page: str) -> list[str]:
    """The ``python`` fences of a page; blocks that only include a file are skipped."""
    blocks = []
    for language, body in FENCE.findall((DOCS / page).read_text()):
        if language == "python" and not SNIPPET.fullmatch(body.strip()):
            blocks.append(body)
    return blocks


def run_blocks(blocks: list[str], cwd: Path) -> subprocess.CompletedProcess:
    script = cwd / "page.py"
    script.write_text("\n\n".join(blocks))
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(script)], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("page", ["concepts.md"])
def test_doctests_on_pages_pass(page: str) -> None:
    text = (DOCS / page).read_text()
    parser = doctest.DocTestParser()
    test = parser.get_doctest(text, {}, page, str(DOCS / page), 0)
    assert test.examples, f"{page} has no >>> examples"
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    runner.run(test)
    assert runner.failures == 0, f"{runner.failures} doctest failure(s) in {page}"


def test_extending_page_code_runs(tmp_path: Path) -> None:
    """The head, mask builder and data set of the page, run as a reader would run them."""
    (tmp_path / "examples").mkdir()
    shutil.copy(ROOT / "examples" / "binomial_plugin.py", tmp_path / "examples")
    result = run_blocks(python_blocks("extending.md"), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "binomial" in result.stdout and "2d-checkerboard" in result.stdout


def test_extending_page_shows_the_plugin_sections() -> None:
    text = (DOCS / "extending.md").read_text()
    plugin = (ROOT / "examples" / "binomial_plugin.py").read_text()
    for include in SNIPPET.findall(text):
        path, _, section = include.partition(":")
        assert (ROOT / path).is_file(), include
        if section:
            assert f"# --8<-- [start:{section}]" in plugin and f"[end:{section}]" in plugin


def test_getting_started_code_runs(tmp_path: Path) -> None:
    """Loading a run back in Python, on a small run folder at the page's path."""
    result = CliRunner().invoke(
        app,
        ["fit", "--out", str(tmp_path / "runs" / "smiley"), "--grid-size", "16",
         "--hidden-sizes", "16", "--epochs", "1", "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    blocks = python_blocks("getting-started.md")
    assert blocks
    result = run_blocks(blocks, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "categorical 2 16" in result.stdout
    assert (tmp_path / "smiley-copy.pt").is_file()


def test_datasets_page_code_runs(tmp_path: Path) -> None:
    result = run_blocks(python_blocks("datasets.md"), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


# -- the pages agree with the registries and the README ------------------------------------


@pytest.mark.parametrize(
    ("page", "names"),
    [
        ("heads.md", dk.heads.names()),
        ("concepts.md", dk.masks.names()),
        ("datasets.md", dk.data.names()),
    ],
)
def test_every_registered_name_is_described(page: str, names: list[str]) -> None:
    text = (DOCS / page).read_text()
    missing = [name for name in names if f"`{name}`" not in text]
    assert not missing, f"{page} does not describe {missing}"


def test_readme_commands_are_on_the_pages() -> None:
    commands = re.findall(r"^python3 -m venv .*$", (ROOT / "README.md").read_text(), re.MULTILINE)
    assert len(commands) == 2
    home = (DOCS / "index.md").read_text()
    assert all(command in home for command in commands)
    assert commands[0] in (DOCS / "getting-started.md").read_text()


def test_every_picture_is_used_and_exists() -> None:
    pages = "".join(p.read_text() for p in DOCS.rglob("*.md"))
    used = set(re.findall(r"\(assets/([\w.-]+\.png)\)", pages))
    present = {p.name for p in (DOCS / "assets").glob("*.png")}
    assert used == present, f"unused: {present - used}; missing: {used - present}"


def test_readme_python_snippet_runs_and_gives_what_it_says(tmp_path: Path) -> None:
    """The README's Python example, run as written, with its comments' shapes checked."""
    blocks = [body for language, body in FENCE.findall((ROOT / "README.md").read_text())
              if language == "python"]  # fmt: skip
    assert len(blocks) == 1
    checks = (
        "\nassert lp.shape == (16,) and lp.dtype == torch.float32, lp.shape"
        "\nassert xs.shape == (1000, 2) and int(xs.min()) >= 0 and int(xs.max()) < 64"
        "\nassert torch.isfinite(lp).all() and (lp < 0).all()\n"
    )
    result = run_blocks([blocks[0] + checks], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
