"""A user's own data: files and arrays as data sets, their splits and their one-line errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from densitykit.checkpoint import read_json
from densitykit.cli import app
from densitykit.data import from_array, load_dataset
from densitykit.data.files import TEST_FRACTION, kind_of, read_arrays
from densitykit.errors import CheckpointError, DataError, ResourceError

runner = CliRunner()
RNG = np.random.default_rng(0)
CODES = RNG.integers(0, 5, size=(60, 3))
IMAGES = RNG.integers(0, 2, size=(40, 6, 5)).astype(np.uint8)


def _csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    np.save(tmp_path / "codes.npy", CODES)
    np.save(tmp_path / "images.npy", IMAGES)
    np.savez(tmp_path / "splits.npz", train=CODES[:40], val=CODES[40:50], test=CODES[50:])
    np.savez(tmp_path / "one.npz", x=CODES)
    header = "a,b,c\n" + "\n".join(",".join(map(str, row)) for row in CODES) + "\n"
    _csv(tmp_path / "codes.csv", header)
    _csv(tmp_path / "codes.tsv", "\n".join("\t".join(map(str, row)) for row in CODES))
    folder = tmp_path / "pngs"
    folder.mkdir()
    for index, image in enumerate(IMAGES[:12]):
        Image.fromarray(image * 255).save(folder / f"{index:03d}.png")
    return {p.name: p for p in tmp_path.iterdir()}


@pytest.mark.parametrize("name", ["codes.npy", "codes.csv", "codes.tsv", "one.npz"])
def test_every_format_reads_the_same_examples(files: dict[str, Path], name: str) -> None:
    ds = load_dataset("file", path=str(files[name]))
    assert ds.kind == "vector" and ds.shape == (3,) and ds.num_values == 5
    every = torch.cat([ds.train, ds.val, ds.test])
    assert sorted(map(tuple, every.tolist())) == sorted(map(tuple, CODES.tolist()))
    assert len(ds.test) == round(TEST_FRACTION * len(CODES))


def test_npz_splits_are_the_files_own(files: dict[str, Path]) -> None:
    ds = load_dataset("file", path=str(files["splits.npz"]))
    assert torch.equal(ds.train, torch.from_numpy(CODES[:40]))
    assert torch.equal(ds.val, torch.from_numpy(CODES[40:50]))
    assert torch.equal(ds.test, torch.from_numpy(CODES[50:]))


def test_images_from_an_array_and_from_a_png_folder(files: dict[str, Path]) -> None:
    ds = load_dataset("file", path=str(files["images.npy"]))
    assert ds.kind == "image" and ds.shape == (6, 5) and ds.num_values == 2 and ds.dim == 30
    pngs = load_dataset("file", path=str(files["pngs"]))
    assert pngs.kind == "image" and pngs.shape == (6, 5) and pngs.num_values == 2
    every = torch.cat([pngs.train, pngs.val, pngs.test])
    assert sorted(map(tuple, every.tolist())) == sorted(
        map(tuple, IMAGES[:12].reshape(12, -1).astype(np.int64).tolist())
    )


def test_splits_test_fixed_validation_seeded_options_rebuild(files: dict[str, Path]) -> None:
    first = load_dataset("file", path=str(files["codes.npy"]), seed=0)
    second = load_dataset("file", path=str(files["codes.npy"]), seed=1)
    assert torch.equal(first.test, second.test) and not torch.equal(first.val, second.val)
    again = load_dataset("file", **json.loads(json.dumps(first.options)))
    assert torch.equal(again.train, first.train) and again.options == first.options
    assert Path(first.options["path"]).is_absolute()


def test_num_values_given_or_max_plus_one(files: dict[str, Path]) -> None:
    assert load_dataset("file", path=str(files["codes.npy"]), num_values=9).num_values == 9
    with pytest.raises(DataError, match="num_values=3 means values 0..2, got the value 4"):
        load_dataset("file", path=str(files["codes.npy"]), num_values=3)


def test_kinds_follow_the_example_shape() -> None:
    assert kind_of((1,), 100) == ("1d", (1,))
    assert kind_of((2,), 10) == ("2d", (10, 10))
    assert kind_of((2,), 1000) == ("vector", (2,))
    assert from_array(RNG.integers(0, 7, size=50)).kind == "1d"
    ds = from_array(RNG.integers(0, 2, size=(50, 12)), image_shape=(3, 4))
    assert ds.kind == "image" and ds.shape == (3, 4)


def test_from_array_takes_tensors_and_a_test_set() -> None:
    data = torch.randint(0, 3, (80, 4))
    ds = from_array(data, test=data[:10])
    assert torch.equal(ds.test, data[:10]) and len(ds.train) + len(ds.val) == 80


BAD = [
    ("floats.csv", "1,2\n3,4.5\n", "non-integer 4.5"),
    ("nan.csv", "1,2\n3,nan\n", "got nan"),
    ("negative.csv", "1,2\n-3,4\n", "non-negative values"),
    ("ragged.csv", "1,2\n3,4,5\n", "number of columns changed from 2 to 3"),
    ("empty.csv", "", "got an empty file"),
    ("header-only.csv", "a,b\n", "a header and no rows"),
    ("letters.csv", "1,2\n3,x\n", "could not convert"),
    ("empty.npy", "", "got an empty file"),
    ("data.txt", "1,2\n", "expected a file ending in .npy"),
]


@pytest.mark.parametrize(("name", "content", "says"), BAD)
def test_bad_files_give_one_line_errors(tmp_path: Path, name: str, content: str, says: str) -> None:
    path = _csv(tmp_path / name, content)
    with pytest.raises(DataError, match=says) as error:
        load_dataset("file", path=str(path))
    assert "\n" not in str(error.value)
    result = runner.invoke(
        app, ["fit", "--data", str(path), "--quiet", "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "error:" in result.output
    assert not (tmp_path / "r").exists()


def test_object_arrays_are_never_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "objects.npy"
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="never unpickles"):
        load_dataset("file", path=str(path))


def test_mixed_image_sizes_name_both_files(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((5, 4), dtype=np.uint8)).save(tmp_path / "b.png")
    with pytest.raises(DataError, match=r"one size, got 4x4 \(a.png\) and 4x5 \(b.png\)"):
        read_arrays(tmp_path)


def test_more_than_memory_is_refused_with_the_size(tmp_path: Path) -> None:
    path = tmp_path / "huge.npy"
    # A header that promises 10^13 values: refused before any data is read.
    with path.open("wb") as handle:
        np.lib.format.write_array_header_2_0(
            handle, {"descr": "|u1", "fortran_order": False, "shape": (10**7, 10**6)}
        )
    with pytest.raises(ResourceError, match=r"would need .*B"):
        load_dataset("file", path=str(path))


def test_fit_a_file_from_the_command_line(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        ["fit", "--data", str(files["codes.csv"]), "--hidden-sizes", "8", "--epochs", "1",
         "--quiet", "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["name"] == "file"
    assert config["data"]["options"]["path"] == str(files["codes.csv"].resolve())
    assert (out / "learning_curves.png").is_file()
    images = tmp_path / "images-run"
    result = runner.invoke(
        app,
        ["fit", "--data", str(files["pngs"]), "--hidden-sizes", "8", "--epochs", "1",
         "--quiet", "--out", str(images)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (images / "samples.png").is_file() and (images / "data.png").is_file()
    assert json.loads((images / "config.json").read_text())["model"]["head"] == "bernoulli"


# -- hostile files ---------------------------------------------------------------------------


def test_read_json_refuses_deep_nesting_huge_files_and_pipes(tmp_path: Path) -> None:
    nested = tmp_path / "config.json"
    nested.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(CheckpointError, match="nested too deeply") as caught:
        read_json(nested)
    assert str(nested) in str(caught.value)
    big = tmp_path / "big.json"
    big.write_text("[" + "0," * 1000 + "0]")
    with pytest.raises(CheckpointError, match="at most 100 bytes, got 2,003 bytes"):
        read_json(big, max_bytes=100)
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(CheckpointError, match="not a regular file"):
        read_json(fifo)
    with pytest.raises(CheckpointError, match="file not found"):
        read_json(tmp_path / "absent.json")


def test_a_run_with_a_deeply_nested_config_is_one_line(
    files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    fitted = runner.invoke(
        app,
        ["fit", "--data", str(files["codes.npy"]), "--hidden-sizes", "8", "--epochs", "1",
         "--quiet", "--out", str(out)],
    )  # fmt: skip
    assert fitted.exit_code == 0, fitted.output
    (out / "config.json").write_text("[" * 200_000 + "]" * 200_000)
    result = runner.invoke(app, ["eval", str(out)])
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "nested too deeply" in result.output
