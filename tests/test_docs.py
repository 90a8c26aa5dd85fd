"""The documentation site: it builds strictly, and what it says is true to the code.

- ``mkdocs build --strict`` passes (a broken link, reference or missing page fails), and
  the site loads no script from a CDN (MathJax is served from it);
- every public name (``__all__`` of every densitykit module) is rendered in the API
  reference;
- docs/cli.md is what docs/scripts/gen_cli.py writes from the typer app, and names
  every option ``densitykit <command> --help`` shows;
- the ``>>>`` sessions of the pages pass as doctests; every page's Python blocks and
  ``densitykit`` commands run, page by page, and print what the page says; a block that
  cannot run says why in the page (``<!-- not-run: reason -->``);
- every benchmark script runs with ``--quick``, and the benchmarks page keeps commands
  out of its tables;
- every registered head, mask builder and data set is described, and the README's
  commands appear on the pages, one command a line.

The runs of pages and benchmark scripts are marked ``slow``.
"""

from __future__ import annotations

import dataclasses
import doctest
import importlib
import importlib.util
import inspect
import json
import math
import os
import pkgutil
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import offline_env
from typer.testing import CliRunner

import densitykit as dk
from densitykit import queries
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
    """Build the site once, strictly, into a temporary folder, as a user builds it.

    No ``--quiet``: it hides the warnings from strict mode, which then passes a site with
    broken references (``mkdocs build --strict --quiet`` exits 0 where ``mkdocs build
    --strict`` and ``mkdocs serve`` fail).
    """
    # No importorskip: the docs tools are in the dev extra, and CI must build the site.
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}{result.stderr}"
    return out


@pytest.mark.slow
def test_site_builds_strictly(site: Path) -> None:
    pages = ["index", "getting-started/", "api/", "cli/", "scaling-out/", "reliability/"]
    for page in (f"{name}index.html" if name.endswith("/") else f"{name}.html" for name in pages):
        assert (site / page).is_file(), page
    assert not (site / "scripts").exists(), "docs/scripts must not be published"


@pytest.mark.slow
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


@pytest.mark.slow
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
            if getattr(param, "hidden", False):
                continue  # kept only to point to its replacement
            names = [*param.opts, *getattr(param, "secondary_opts", [])]
            for option in (n for n in names if n.startswith("-")):
                assert option in result.output, f"{option} not in `{title} --help`"
                assert option in listed, f"{option} of `{title}` not in cli.md"


# -- the pages' code -----------------------------------------------------------------------
#
# Every fenced block of every page is either run by the tests or marked, in the Markdown,
# with the reason it is not: an HTML comment on the line just before the fence,
#
#     <!-- not-run: needs the MNIST files -->
#
# Each page runs on its own, top to bottom, in a fresh process and an empty folder: its
# ``python`` blocks in one namespace, its ``bash`` blocks and the ``$`` lines of its
# ``console`` blocks as ``densitykit`` commands (through the typer app, in that process).
# A ``python`` block that only includes a file (``--8<--``) shows code that a later block
# imports, and is not run twice. ``pycon`` sessions run as doctests; ``text`` is output.

FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)```(?P<language>[\w-]*)")
NOT_RUN = re.compile(r"^\s*<!--\s*not-run:(?P<reason>.*?)-->\s*$")
SNIPPET = re.compile(r'^--8<-- "([^"]+)"$', re.MULTILINE)
SHELL = {"bash", "sh", "console"}
PAGES = [*sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")), "../README.md"]
# The pages with code to run (the README's, with its checks, has its own test below).
CODE_PAGES = [
    page
    for page in PAGES[:-1]
    if re.search(r"^\s*```(python|bash|sh|console)\b", (DOCS / page).read_text(), re.MULTILINE)
]

# Files a page says it runs beside (extending.md: "from the repository root").
PAGE_FILES = {
    "extending.md": ["examples/binomial_plugin.py"],
    "families.md": ["examples/family_plugin.py"],
}
# What a page's code prints, as its comments and transcripts say.
PAGE_OUTPUT = {
    "getting-started.md": [
        "test NLL 5.3982 nats (2.6991 nats/dim, 3.8939 bits/dim); true entropy 5.3921",
        "best epoch 19 of 20, 91,698 parameters",
        "test NLL 5.3982 nats (2.69908 nats/dim, 3.89395 bits/dim) with 1 mask(s)",
        "categorical 2 25",
        "wrote 5000 samples to samples.png",
    ],
    "extending.md": ["'binomial'", "[0, 3, 6, 1, 4, 7, 2, 5, 8]", "2d-checkerboard"],
    "families.md": [
        "OrderlessModel orderless True",
        "independent  Independent categoricals",
        "maf (1000, 2) True\nTrue",
    ],
    "datasets.md": ["Dataset('2d-smiley', kind='2d', shape=(32, 32)"],
    "real-data.md": [
        "columns: age:real, smoker:binary, job:categorical, income:spike",
        "spike head (a probability at the spike, a density elsewhere): income",
        "test NLL in the data's units (log-density)",
        "age:real, smoker:binary, job:categorical (3 levels), income:spike=0",
        "filled 4 empty cells in 3 of 3 rows, 5 draw(s)",
        "test conditional NLL of job, income given age, smoker in the data's units",
    ],
}
# What a page's code writes into its folder.
PAGE_FILES_WRITTEN = {
    "getting-started.md": ["runs/smiley/checkpoint.pt", "samples.png", "smiley-copy.pt"],
    "extending.md": ["runs/binomial/metrics.json", "binomial.pt"],
    "real-data.md": [
        "people-samples.csv",
        "people-scores.csv",
        "filled.csv",
        "runs/people-api/config.json",
        "runs/8gaussians/density.png",
    ],
    "families.md": [
        "runs/orderless/metrics.json",
        "completions.png",
        "runs/independent/metrics.json",
        "independent.npy",
        "runs/maf/density.png",
        "maf-samples.npy",
    ],
}


@dataclass
class Block:
    page: str
    line: int  # of the opening fence, 1-based
    language: str
    body: str
    not_run: str | None  # the reason given in the page, or None

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def page_blocks(page: str) -> list[Block]:
    """The fenced blocks of a page, each with the not-run reason just before it, if any.

    Raises:
        ValueError: A not-run marker that is not right before a fence, or with no reason.
    """
    lines = (DOCS / page).read_text().splitlines()
    blocks, reason, number = [], None, 0
    while number < len(lines):
        line = lines[number]
        marker = NOT_RUN.match(line)
        fence = FENCE_OPEN.match(line)
        if marker:
            if not marker["reason"].strip():
                raise ValueError(f"{page}:{number + 1}: not-run marker without a reason")
            reason = marker["reason"].strip()
        elif fence:
            indent, end = fence["indent"], number + 1
            while end < len(lines) and lines[end].strip() != "```":
                end += 1
            body = "\n".join(
                text[len(indent) :] if text.startswith(indent) else text.lstrip()
                for text in lines[number + 1 : end]
            )
            blocks.append(Block(page, number + 1, fence["language"], body + "\n", reason))
            reason, number = None, end
        elif reason is not None:
            raise ValueError(f"{page}:{number + 1}: a not-run marker must be right before a fence")
        number += 1
    return blocks


def shell_commands(block: Block) -> list[list[str]]:
    """The commands of a shell block, each as the argument list of ``densitykit``.

    Raises:
        ValueError: A command that is not ``densitykit ...`` (mark such a block not-run).
    """
    if block.language == "console":
        lines = [line[2:] for line in block.body.splitlines() if line.startswith("$ ")]
    else:
        lines = block.body.replace("\\\n", " ").splitlines()
    commands = []
    for line in lines:
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";")
        lexer.whitespace_split = True
        words: list[str] = []
        for token in [*lexer, ";"]:
            if token != ";":
                words.append(token)
            elif words:
                if words[0] != "densitykit":
                    raise ValueError(
                        f"{block.where}: `{shlex.join(words)}` is not a densitykit command; "
                        "run it here or mark the block <!-- not-run: reason -->"
                    )
                commands.append(words[1:])
                words = []
    return commands


def page_steps(page: str) -> list[dict]:
    """What running a page means: its Python code and its commands, in page order."""
    steps = []
    for block in page_blocks(page):
        if block.not_run is not None:
            continue
        if block.language == "python" and not SNIPPET.fullmatch(block.body.strip()):
            steps.append({"where": block.where, "python": block.body})
        elif block.language in SHELL:
            steps.extend({"where": block.where, "argv": argv} for argv in shell_commands(block))
    return steps


# Run in a fresh process: a page's plug-ins register names that must not leak into the
# registries of the test session.
DRIVER = """
import json, sys, traceback
from typer.testing import CliRunner
from densitykit.cli import app

namespace = {"__name__": "__main__"}
for step in json.load(open(sys.argv[1])):
    print(f"--- {step['where']}", flush=True)
    if "python" in step:
        exec(compile(step["python"], step["where"], "exec"), namespace)
        continue
    result = CliRunner().invoke(app, step["argv"])
    print(result.output, flush=True)
    if result.exit_code != 0:
        if result.exc_info and not isinstance(result.exception, SystemExit):
            traceback.print_exception(*result.exc_info)
        sys.exit(f"{step['where']}: densitykit {' '.join(step['argv'])} exited {result.exit_code}")
"""


def run_page(page: str, cwd: Path) -> subprocess.CompletedProcess:
    for name in PAGE_FILES.get(page, []):
        (cwd / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, cwd / name)
    (cwd / "steps.json").write_text(json.dumps(page_steps(page)))
    (cwd / "driver.py").write_text(DRIVER)
    return subprocess.run(
        [sys.executable, "driver.py", "steps.json"],
        cwd=cwd,
        env=offline_env(cwd),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_every_block_is_run_or_says_why_not(capsys: pytest.CaptureFixture[str]) -> None:
    """Parsing every page: markers are in place, shell blocks are densitykit commands;
    the list of blocks not run, with their reasons, is printed (``pytest -s``)."""
    not_run, run = [], 0
    for page in PAGES:
        for block in page_blocks(page):
            if block.not_run is not None:
                not_run.append(f"{block.where} ({block.language}): {block.not_run}")
            elif block.language == "python" or block.language in SHELL:
                run += 1
                if block.language in SHELL:
                    assert shell_commands(block), f"{block.where}: a shell block with no command"
    with capsys.disabled():
        print(f"\n{run} code blocks run, {len(not_run)} not run:")
        print("\n".join(f"  {line}" for line in not_run))
    assert run >= 15


@pytest.mark.slow
@pytest.mark.parametrize("page", CODE_PAGES)
def test_page_code_runs(page: str, tmp_path: Path) -> None:
    """The page's code, run as a reader would run it, says and writes what the page says."""
    if not page_steps(page):
        pytest.skip(f"every block of {page} is marked not-run")
    result = run_page(page, tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    for text in PAGE_OUTPUT.get(page, []):
        assert text in result.stdout, f"{page} does not print {text!r}"
    for name in PAGE_FILES_WRITTEN.get(page, []):
        assert (tmp_path / name).is_file(), f"{page} does not write {name}"


@pytest.mark.parametrize("page", ["concepts.md"])
def test_doctests_on_pages_pass(page: str) -> None:
    text = (DOCS / page).read_text()
    parser = doctest.DocTestParser()
    test = parser.get_doctest(text, {}, page, str(DOCS / page), 0)
    assert test.examples, f"{page} has no >>> examples"
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    runner.run(test)
    assert runner.failures == 0, f"{runner.failures} doctest failure(s) in {page}"


def test_extending_page_shows_the_plugin_sections() -> None:
    text = (DOCS / "extending.md").read_text()
    plugin = (ROOT / "examples" / "binomial_plugin.py").read_text()
    for include in SNIPPET.findall(text):
        path, _, section = include.partition(":")
        assert (ROOT / path).is_file(), include
        if section:
            assert f"# --8<-- [start:{section}]" in plugin and f"[end:{section}]" in plugin


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
    """The README's one-line commands (CI reads them as they are) are on the pages one
    command a line: the same commands, in the same order, in one block."""
    commands = re.findall(r"^python3 -m venv .*$", (ROOT / "README.md").read_text(), re.MULTILINE)
    assert len(commands) == 2
    blocks = {
        page: [b.body.strip() for b in page_blocks(page) if b.language == "bash"]
        for page in ("index.md", "getting-started.md")
    }
    steps = ["\n".join(command.split(" && ")) for command in commands]
    assert all(len(step.splitlines()) == 5 for step in steps), steps
    assert all(step in blocks["index.md"] for step in steps)
    assert steps[0] in blocks["getting-started.md"]


BACKTICKS = re.compile(r"^[ \t]*(?P<ticks>`{3,})(?P<rest>.*)$")


def fences_with_text_after_the_close(text: str) -> list[int]:
    """The lines (1-based) inside an open fence that start with as many backticks as its
    opening and go on with text: Markdown reads them as code, not as the close, so the
    fence runs on and swallows the headings and tables after it."""
    wrong, opened = [], 0  # opened: the backticks of the open fence, 0 outside one
    for number, line in enumerate(text.splitlines(), 1):
        match = BACKTICKS.match(line)
        if not match:
            continue
        if not opened:
            opened = len(match["ticks"])
        elif len(match["ticks"]) >= opened:
            if match["rest"].strip():
                wrong.append(number)
            opened = 0
    return wrong


def test_fences_with_text_after_the_close_are_found() -> None:
    page = "```python\nx = 1\n``` Then a sentence\n## A heading\n```\n"
    assert fences_with_text_after_the_close(page) == [3]
    assert fences_with_text_after_the_close("````md\n```python\n```\n````\n") == []


@pytest.mark.parametrize("page", PAGES)
def test_no_fence_is_closed_with_text_after_it(page: str) -> None:
    wrong = fences_with_text_after_the_close((DOCS / page).read_text())
    assert not wrong, (
        f"{page}: lines {wrong} close a code fence with text after the backticks; "
        "put the text on a line of its own"
    )


def test_links_to_missing_headings_fail_the_strict_build() -> None:
    """mkdocs (>= 1.6) checks ``page.md#anchor`` links against the target's headings, and
    ``--strict`` fails on them when their level is ``warn`` (the default only informs)."""
    config = (ROOT / "mkdocs.yml").read_text()
    assert re.search(r"^validation:\n(?:[ \t]+.*\n)*?[ \t]+anchors: warn$", config, re.M)
    assert re.search(r"^strict: true$", config, re.M)


# Words of the project's own tracker and work sittings, which mean nothing to a reader.
INTERNAL_WORDING = re.compile(
    r"\bthe issue\b|\bissue's\b|\bissue 16\b|\bthis stop\b|\b(?:the same|that|this) session\b"
    r"|\bmoonshot\b",
    re.IGNORECASE,
)


@pytest.mark.parametrize("page", [p for p in PAGES if p != "development-notes.md"])
def test_user_pages_speak_to_users(page: str) -> None:
    """The pages a user reads name no tracker issue or work session (the development
    notes, out of the navigation, keep such records)."""
    found = INTERNAL_WORDING.findall((DOCS / page).read_text())
    assert not found, f"{page} speaks of the project's own work: {found}"


def test_every_picture_is_used_and_exists() -> None:
    pages = "".join(p.read_text() for p in DOCS.rglob("*.md"))
    used = set(re.findall(r"\(assets/([\w.-]+\.png)\)", pages))
    present = {p.name for p in (DOCS / "assets").glob("*.png")}
    assert used == present, f"unused: {present - used}; missing: {used - present}"


@pytest.mark.slow
def test_readme_python_snippet_runs_and_gives_what_it_says(tmp_path: Path) -> None:
    """The README's Python example, run as written, with its comments' shapes checked."""
    blocks = [b for b in page_blocks("../README.md") if b.language == "python"]
    assert len(blocks) == 1
    checks = (
        "assert lp.shape == (16,) and lp.dtype == torch.float32, lp.shape\n"
        "assert xs.shape == (1000, 2) and int(xs.min()) >= 0 and int(xs.max()) < 64\n"
        "assert torch.isfinite(lp).all() and (lp < 0).all()\n"
    )
    steps = [{"where": blocks[0].where, "python": blocks[0].body + checks}]
    (tmp_path / "steps.json").write_text(json.dumps(steps))
    (tmp_path / "driver.py").write_text(DRIVER)
    result = subprocess.run(
        [sys.executable, "driver.py", "steps.json"],
        cwd=tmp_path, env=offline_env(tmp_path), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


# -- the benchmark scripts take --quick, as the benchmarks page says -----------------------

BENCHMARKS = ROOT / "benchmarks"


def write_fake_mnist(folder: Path, num_train: int = 1200, num_test: int = 200) -> Path:
    """Random 28 x 28 grey images and labels 0-9 as the four MNIST files: enough to run
    on, not MNIST."""
    from densitykit.data.idx import write_idx

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, count in (("train", num_train), ("t10k", num_test)):
        images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
        write_idx(images, folder / f"{name}-images-idx3-ubyte.gz")
        labels = rng.integers(0, 10, size=count, dtype=np.uint8)
        write_idx(labels, folder / f"{name}-labels-idx1-ubyte.gz")
    return folder


def check_reproductions(stdout: str, tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from reproductions import EXPERIMENTS
    finally:
        sys.path.remove(str(BENCHMARKS))
    rows = [line for line in stdout.splitlines() if line.startswith("| ") and "`densitykit" in line]
    assert [row.split(" | ")[0][2:] for row in rows] == [name for name, _, _ in EXPERIMENTS]
    assert all("--epochs 2 " in row and " 2 (" in row for row in rows), rows


def check_mnist_quality(stdout: str, tmp_path: Path) -> None:
    last = stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"test_nll_nats=\d+\.\d{4}", last), last


def check_inpainting(stdout: str, tmp_path: Path) -> None:
    check_mnist_quality(stdout, tmp_path)
    for text in ("(a) any-order", "(a') mask input", "not its ordering", "random:0.5", "epochs"):
        assert text in stdout, text
    assert "pixels first: False" not in stdout
    assert stdout.count("pixels first: True") == 3


def check_orderless_inpainting(stdout: str, tmp_path: Path) -> None:
    check_mnist_quality(stdout, tmp_path)
    for text in ("(a) K=1", "(a) K=2", "(c) specialist", "joint test NLL", "(natural)"):
        assert text in stdout, text
    report = json.loads(
        (tmp_path / "runs" / "orderless-inpainting" / "500-scans-quick.json").read_text()
    )
    specialists = {"natural", "left-half specialist", "random:0.5 specialist"}
    assert set(report["specialists"]) == specialists
    assert report["orderless"]["settings"]["model"]["orderings"] == "scans"
    pictures = sorted(p.name for p in (tmp_path / "pictures").glob("*.png"))
    assert pictures == [
        "orderless-completions-left-half.png",
        "orderless-completions-random-0-5.png",
        "orderless-completions-top-half.png",
    ]


def check_continuous_mnist(stdout: str, tmp_path: Path) -> None:
    last = stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"test_log_density_nats=-?\d+\.\d{4}", last), last
    assert "MADE MoG" in stdout and "bits per pixel (pixel space [0, 256))" in stdout
    report = json.loads(
        (tmp_path / "runs" / "continuous-mnist" / "made-mog-quick.json").read_text()
    )
    assert report["config"]["data"]["name"] == "mnist-logit"
    assert report["config"]["model"]["head"] == "gaussian-mixture"


def check_continuous_mnist_peers(stdout: str, tmp_path: Path) -> None:
    assert "densitykit gaussian-mixture" in stdout and "densitykit gaussian " in stdout
    assert stdout.strip().splitlines()[-1] in ("peers_done=2", "peers_done=4")


def check_continuous_mnist_maf_peers(stdout: str, tmp_path: Path) -> None:
    assert "densitykit MAF (5)" in stdout
    # zuko's and nflows' MAFs where installed, a note naming them where not
    lines = stdout.splitlines()
    skipped = next((line for line in lines if line.startswith("note: skipped")), "")
    assert ("zuko MAF (5)" in stdout) == ("zuko" not in skipped), stdout
    assert ("nflows MaskedAutoregressiveFlow (5)" in stdout) == ("nflows" not in skipped), stdout
    assert stdout.strip().splitlines()[-1] in ("peers_done=1", "peers_done=2", "peers_done=3")
    report = json.loads(
        (tmp_path / "runs" / "continuous-mnist" / "maf-peers-quick.json").read_text()
    )
    assert report["results"]["densitykit MAF (5)"]["test_log_density_nats"] < 0


def check_throughput(stdout: str, tmp_path: Path) -> None:
    for text in ("torch:", "ms/step", "ms/batch", "196-125-196", "196-128-128-196"):
        assert text in stdout, text


def check_sampling(stdout: str, tmp_path: Path) -> None:
    same = "identical with the same generator in every run: True"
    for text in ("torch:", "reference", "speed-up", same):
        assert text in stdout, text


def check_mixed_tables(stdout: str, tmp_path: Path) -> None:
    for text in ("torch:", "command:", "densitykit MADE", "product of the marginals",
                 "fresh rows from the generator", "accuracy (0.5 is perfect)"):  # fmt: skip
        assert text in stdout, text
    assert "zuko MAF" in stdout  # a row, or the note of why it was skipped


def check_maf_sampling(stdout: str, tmp_path: Path) -> None:
    for text in ("threads: 1", "incremental s", "D-pass s", "ratio per run", "ms/step"):
        assert text in stdout, text
    differences = re.findall(r"largest \|incremental - D-pass\| over every run (\S+) ", stdout)
    assert len(differences) == 2 and all(float(d) < 1e-4 for d in differences), stdout


# script -> (arguments after --quick, given the temporary folder; check of its output)
QUICK_RUNS = {
    "reproductions.py": (
        lambda tmp: ["--out", str(tmp / "runs"), "--mnist-dir", str(write_fake_mnist(tmp / "m"))],
        check_reproductions,
    ),
    "mnist_quality.py": (
        lambda tmp: ["--data-dir", str(write_fake_mnist(tmp / "m"))],
        check_mnist_quality,
    ),
    "binarized_mnist.py": (
        lambda tmp: [
            "wide-resample",
            "--data-dir",
            str(write_fake_mnist(tmp / "m")),
            "--num-val",
            "200",
        ],
        check_mnist_quality,
    ),
    "inpainting.py": (lambda tmp: ["500-500-cosine", "--mask-input"], check_inpainting),
    "orderless_inpainting.py": (
        lambda tmp: ["500-scans", "--pictures", str(tmp / "pictures")],
        check_orderless_inpainting,
    ),
    "conditional.py": (
        lambda tmp: ["--data-dir", str(write_fake_mnist(tmp / "m")), "--out", str(tmp / "runs")],
        check_mnist_quality,
    ),
    "continuous_mnist.py": (
        lambda tmp: [
            "made-mog",
            "--data-dir",
            str(write_fake_mnist(tmp / "m")),
            "--num-val",
            "200",
        ],
        check_continuous_mnist,
    ),
    "throughput.py": (lambda tmp: [], check_throughput),
    "sampling.py": (lambda tmp: [], check_sampling),
    "mixed_tables.py": (lambda tmp: [], check_mixed_tables),
    "maf_sampling.py": (lambda tmp: [], check_maf_sampling),
}


def test_every_benchmark_script_is_run_quick() -> None:
    scripts = {p.name for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_")}
    assert scripts == set(QUICK_RUNS)
    page = (DOCS / "benchmarks.md").read_text()
    assert all(f"benchmarks/{script}" in page for script in scripts)


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(QUICK_RUNS))
def test_benchmark_script_runs_quick(script: str, tmp_path: Path) -> None:
    arguments, check = QUICK_RUNS[script]
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick", *arguments(tmp_path)],
        cwd=tmp_path,
        env=offline_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    check(result.stdout, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "check"),
    [("peers", check_continuous_mnist_peers), ("maf-peers", check_continuous_mnist_maf_peers)],
)
def test_continuous_mnist_peers_runs_quick(
    mode: str, check: Callable[[str, Path], None], tmp_path: Path
) -> None:
    """The peers comparisons' code paths (nflows and zuko where installed, a note where not)."""
    command = [sys.executable, str(BENCHMARKS / "continuous_mnist.py"), mode, "--quick"]
    command += ["--data-dir", str(write_fake_mnist(tmp_path / "m")), "--num-val", "200"]
    result = subprocess.run(
        command, cwd=tmp_path, env=offline_env(tmp_path), capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    check(result.stdout, tmp_path)


@pytest.mark.slow
def test_inpainting_spreads_its_models_over_processes(tmp_path: Path) -> None:
    """``--only`` trains the named models alone; ``--reuse`` then evaluates them and trains
    the rest (under any time budget that would not have stopped them). The any-order
    models validate with the recipe's fewer orderings, and the table's joint NLL is
    computed again with all of them."""

    def run(*arguments: str) -> subprocess.CompletedProcess:
        command = [sys.executable, str(BENCHMARKS / "inpainting.py"), "500-500-cosine"]
        command += ["--quick", "--out", str(tmp_path / "runs"), *arguments]
        return subprocess.run(
            command, cwd=tmp_path, env=offline_env(tmp_path), capture_output=True, text=True,
            timeout=600,
        )  # fmt: skip

    first = run("--only", "any-order")
    assert first.returncode == 0, first.stderr[-4000:]
    assert "trained ['any-order']" in first.stdout and "training natural" not in first.stderr
    assert not (tmp_path / "runs" / "natural").exists()
    wrong = run("--only", "nothing")
    assert wrong.returncode != 0 and "--only names models of this command" in wrong.stderr
    second = run("--reuse")
    assert second.returncode == 0, second.stderr[-4000:]
    assert "reusing any-order from" in second.stderr and "training natural" in second.stderr
    report = json.loads((tmp_path / "runs.json").read_text())
    any_order = report["models"]["any-order"]
    saved = json.loads((tmp_path / "runs" / "any-order" / "config.json").read_text())
    assert saved["train"]["eval_masks"] == any_order["validation_orderings"] == 1
    assert any_order["eval_orderings"] == saved["model"]["num_masks"] == 2
    metrics = json.loads((tmp_path / "runs" / "any-order" / "metrics.json").read_text())
    assert any_order["joint_test_nll_validation_mixture_nats"] == metrics["test_nll_nats"]
    assert any_order["joint_test_nll_nats"] != metrics["test_nll_nats"]  # both orderings
    assert report["models"]["natural"].get("validation_orderings") is None
    # A time budget that would not have stopped the saved runs is no other setting; one
    # they outlasted is, and the check comes before any model is evaluated.
    again = run("--reuse", "--time-budget", "1000")
    assert again.returncode == 0, again.stderr[-4000:]
    assert "training" not in again.stderr and again.stderr.count("reusing") == 4
    short = run("--reuse", "--time-budget", "0.000001")
    assert short.returncode != 0 and "holds a run of other settings" in short.stderr
    assert "reusing" not in short.stderr


@pytest.mark.slow
def test_inpainting_trains_its_any_order_model_apart_and_asks_it_drawn_orderings(
    tmp_path: Path,
) -> None:
    """``500-told-long`` trains (a) with its own settings (no weight decay, its own
    epochs) and the others with the shared ones; (a)'s figures under orderings drawn at
    inference are the log-mean-exp mixture over those seeded orderings."""
    command = [sys.executable, str(BENCHMARKS / "inpainting.py"), "500-told-long", "--quick"]
    command += ["--out", str(tmp_path / "runs")]
    result = subprocess.run(
        command, cwd=tmp_path, env=offline_env(tmp_path), capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    assert "3 drawn orderings" in result.stdout and "(a) drawn - (c)" in result.stdout
    report = json.loads((tmp_path / "runs.json").read_text())
    train = report["train"]
    assert train["any-order"]["weight_decay"] == 0.0
    assert {train[name]["weight_decay"] for name in train if name != "any-order"} == {1e-4}
    assert {config["ema_decay"] for config in train.values()} == {0.999}
    saved = json.loads((tmp_path / "runs" / "any-order" / "config.json").read_text())
    assert saved["train"]["weight_decay"] == 0.0
    drawn = report["models"]["any-order"]["inference"]
    assert drawn["orderings"] == 3
    assert "inference" not in report["models"]["natural"]

    run = dk.runs.load_run(tmp_path / "runs" / "any-order", device="cpu")
    model, test = run.model, run.dataset.test
    conns = model.draw_orderings(3, seed=drawn["seed"])
    own = {tuple(c.ordering.tolist()) for c in model.backbone.connectivities()}
    assert not own & {tuple(c.ordering.tolist()) for c in conns}  # never built in
    with torch.no_grad():
        each = torch.stack([model.log_prob(test, connectivity=c) for c in conns]).double()
        joint = -(torch.logsumexp(each, 0) - math.log(3)).mean()
        top = queries.observed_pattern("top-half", (8, 8), 1)[0]
        rest = -model.conditional_log_prob(test, top, connectivities=conns).mean()
    assert math.isclose(drawn["joint_test_nll_nats"], float(joint), rel_tol=1e-6)
    assert math.isclose(drawn["conditional_nll_nats"]["top-half"], float(rest), rel_tol=1e-9)
    result = report["patterns"]["top-half"]
    assert result["any_order_inference_minus_specialist_nats"] == pytest.approx(
        result["any_order_inference_nats"] - result["specialist_nats"]
    )


def test_benchmarks_page_keeps_commands_out_of_tables_and_names_no_outside_path() -> None:
    """Commands are in code blocks, not in narrow table cells; no page points at folders
    outside the repository (a reader's are not ours: the pages say ``DIR``)."""
    page = (DOCS / "benchmarks.md").read_text()
    rows = [line for line in page.splitlines() if line.startswith("|")]
    assert rows
    crowded = [row for row in rows if re.search(r"`(python|densitykit|torchrun) ", row)]
    assert not crowded, f"commands in table cells: {crowded}"
    for path in [*DOCS.rglob("*.md"), ROOT / "README.md"]:
        outside = re.findall(r"\.\./[\w.-]+/[\w./-]*", path.read_text())
        assert not outside, f"{path.name} names paths outside the repository: {outside}"


def test_the_image_ordering_recipes_change_only_the_any_order_models_orderings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``500-told-regions`` (or ``-scans``) is ``500-told-cosine`` but for (a)'s ordering
    distribution, drawn on the benchmark's images; the specialists are the same settings
    (so their run folders are the same runs)."""
    path = BENCHMARKS / "inpainting.py"
    spec = importlib.util.spec_from_file_location("benchmark_inpainting", path)
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)  # its dataclasses look it up
    monkeypatch.setattr(sys, "path", list(sys.path))  # it adds its own folder
    spec.loader.exec_module(bench)
    observed = bench.observed_sets((8, 8), 0)
    for name, base, orderings, share in (
        ("500-told-regions", "500-told-cosine", "regions", {}),
        ("500-told-all-regions", "500-told-cosine", "regions", {"region_share": 1.0}),
        ("500-told-quarter-regions", "500-told-cosine", "regions", {"region_share": 0.25}),
        ("500-told-long-regions", "500-told-long", "regions", {}),
        ("500-told-scans", "500-told-cosine", "scans", {}),
        ("500-told-more-scans", "500-told-cosine", "scans", {"scan_share": 0.75}),
        ("500-told-long-scans", "500-told-long", "scans", {}),
        ("2000-told-scans", "2000-told-cosine", "scans", {}),
    ):
        configs = bench.model_configs(bench.RECIPES[name], (8, 8), observed, True, False)
        plain = bench.model_configs(bench.RECIPES[base], (8, 8), observed, True, False)
        options = {"orderings": orderings, "image_shape": [8, 8], **share}
        assert configs["any-order"] == dataclasses.replace(plain["any-order"], mask_options=options)
        assert {k: v for k, v in configs.items() if k != "any-order"} == {
            k: v for k, v in plain.items() if k != "any-order"
        }
        assert bench.RECIPES[name].train == bench.RECIPES[base].train
        assert bench.RECIPES[name].any_order_train == bench.RECIPES[base].any_order_train
        model = dk.build_model(
            dataclasses.replace(configs["any-order"], dim=64, num_values=2, head="bernoulli")
        )
        source = model.connectivity_source
        assert (source.orderings, source.image_shape) == (orderings, (8, 8))
        shares = (source.region_share, source.scan_share)
        if orderings == "regions":
            assert shares == (share.get("region_share", 0.5), None)
        else:
            assert shares == (None, share.get("scan_share", 0.5))


def test_every_orderless_recipe_is_compared_with_specialists_of_its_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """(b) and (c) of an orderless recipe come from an inpainting recipe of the same
    hidden layers, direct connections and weight averaging."""
    path = BENCHMARKS / "orderless_inpainting.py"
    spec = importlib.util.spec_from_file_location("benchmark_orderless_inpainting", path)
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)
    monkeypatch.setattr(sys, "path", list(sys.path))
    spec.loader.exec_module(bench)
    assert bench.RECIPES
    for name, recipe in bench.RECIPES.items():
        rivals = bench.inpainting.RECIPES[recipe.specialists]
        assert rivals.hidden_sizes == recipe.hidden_sizes, name
        assert rivals.direct_connections, name
        assert rivals.train.ema_decay == recipe.train.ema_decay, name
        config = bench.orderless_config(recipe, (28, 28), quick=False)
        assert config.hidden_sizes == recipe.hidden_sizes and config.direct_connections
        assert config.orderings == recipe.orderings


def test_every_test_the_reliability_page_names_exists() -> None:
    """Each guarantee on the Reliability page names its test: a name without a file is in
    tests/test_runfolder.py, or in the file named before it in the same row."""
    tests: dict[str, set[str]] = {}
    for path in (ROOT / "tests").glob("test_*.py"):
        for name in re.findall(r"^def (test_\w+)", path.read_text(), re.MULTILINE):
            tests.setdefault(name, set()).add(f"tests/{path.name}")
    missing, named = [], 0
    for row in (DOCS / "reliability.md").read_text().splitlines():
        if not row.startswith("|"):
            continue
        current = "tests/test_runfolder.py"
        for reference in re.findall(r"`((?:tests/\w+\.py::)?test_\w+)`", row):
            if "::" in reference:
                current, name = reference.split("::")
            else:
                name = reference
            named += 1
            if current not in tests.get(name, set()):
                missing.append(f"{current}::{name}")
    assert named > 50 and missing == [], missing
