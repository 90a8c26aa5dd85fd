"""A user's own data: files and arrays as data sets, their splits and their one-line errors."""

from __future__ import annotations

import json
import os
import signal
import struct
import tracemalloc
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import offline_env, run_cli, write_gzip_bomb
from PIL import Image
from typer.testing import CliRunner

from densitykit import memory
from densitykit.checkpoint import read_json
from densitykit.cli import app
from densitykit.data import from_array, load_dataset
from densitykit.data.files import TEST_FRACTION, kind_of, read_arrays
from densitykit.data.idx import write_idx
from densitykit.errors import CheckpointError, DataError, ResourceError
from densitykit.scoring import read_scoring_data

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
    # A file with a non-integer value is a table of real columns (tests/test_tables.py);
    # two rows are too few to split.
    ("floats.csv", "1,2\n3,4.5\n", "expected a test split, got 2 example"),
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
    # 10^11 values in a sparse file: refused before any data is read.
    with path.open("wb") as handle:
        np.lib.format.write_array_header_2_0(
            handle, {"descr": "|u1", "fortran_order": False, "shape": (10**6, 10**5)}
        )
        handle.truncate(handle.tell() + 10**11)
    with pytest.raises(ResourceError, match=r"would need .*B"):
        load_dataset("file", path=str(path))


def test_a_npy_header_is_never_trusted_beyond_the_files_size(tmp_path: Path) -> None:
    path = tmp_path / "short.npy"
    with path.open("wb") as handle:
        np.lib.format.write_array_header_2_0(
            handle, {"descr": "|u1", "fortran_order": False, "shape": (10**7, 10**6)}
        )
        handle.write(bytes(100))
    with pytest.raises(DataError, match=r"promises shape \(10000000, 1000000\).*holds 100 bytes"):
        load_dataset("file", path=str(path))
    archive = tmp_path / "short.npz"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(path, "data.npy")
    with pytest.raises(DataError, match="short.npz:data.npy: the .npy header promises"):
        load_dataset("file", path=str(archive))


def test_a_wide_npy_reads_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "wide.npy"
    np.save(path, RNG.integers(0, 2, size=(10, 100_000), dtype=np.uint8))
    arrays = read_arrays(path)
    assert arrays["data"].shape == (10, 100_000) and arrays["data"].dtype == np.int64


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


def test_a_csv_with_excels_byte_order_mark_keeps_its_first_row(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf1,2\r\n3,4\r\n5,6\r\n")
    assert read_arrays(path)["data"].tolist() == [[1, 2], [3, 4], [5, 6]]
    path.write_bytes(b"\xef\xbb\xbfa,b\r\n1,2\r\n3,4\r\n5,6\r\n")
    assert read_arrays(path)["data"].tolist() == [[1, 2], [3, 4], [5, 6]]


def test_a_header_is_a_row_of_names_and_the_data_set_says_so(tmp_path: Path) -> None:
    rows = "\n".join(",".join(map(str, row)) for row in CODES)
    named = _csv(tmp_path / "named.csv", "a,b,c\n" + rows)
    assert load_dataset("file", path=str(named)).options["header"] is True
    plain = _csv(tmp_path / "plain.csv", rows)
    assert load_dataset("file", path=str(plain)).options["header"] is False
    # A first row with an empty cell is a damaged data row, not a header.
    gap = _csv(tmp_path / "gap.csv", "1,,3\n" + rows)
    with pytest.raises(DataError, match="gap.csv: .*could not convert"):
        load_dataset("file", path=str(gap))
    # The choice can be forced, and it rebuilds the same.
    forced = load_dataset("file", path=str(named), header=True)
    assert len(forced.train) + len(forced.val) + len(forced.test) == len(CODES)
    with pytest.raises(DataError, match="could not convert"):
        load_dataset("file", path=str(named), header=False)


def test_a_latin1_csv_is_one_line_naming_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("café,b\n1,2\n3,4\n".encode("latin-1"))
    with pytest.raises(
        DataError, match=r"latin.csv: expected UTF-8 text, got the byte 0xe9 on line 1"
    ):
        read_arrays(path)


def test_a_value_beyond_int64_is_named_not_wrapped(
    tmp_path: Path, recwarn: pytest.WarningsRecorder
) -> None:
    path = _csv(tmp_path / "big.csv", "1,2\n3,1e19\n5,6\n")
    with pytest.raises(
        DataError, match=r"big.csv: .*below 2\*\*63, got 1e\+19 in data row 2, column 2"
    ):
        read_arrays(path)
    npy = tmp_path / "big.npy"
    np.save(npy, np.array([1, 2**64 - 1], dtype=np.uint64))
    with pytest.raises(DataError, match="below 2\\*\\*63, got 18446744073709551615 at example 1"):
        read_arrays(npy)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def _give_up(signum: int, frame: object) -> None:
    raise TimeoutError("the reader blocked on a pipe")


def test_a_pipe_or_a_device_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "x.csv"
    os.mkfifo(fifo)
    previous = signal.signal(signal.SIGALRM, _give_up)
    signal.alarm(10)  # a reader that opens the pipe would wait for a writer forever
    try:
        with pytest.raises(DataError, match=r"x.csv: expected a regular data file, got a pipe"):
            read_arrays(fifo)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    with pytest.raises(DataError, match=r"x.csv: expected a regular data file, got a pipe"):
        load_dataset("file", path=str(fifo))
    device = tmp_path / "zero.csv"
    device.symlink_to("/dev/zero")
    with pytest.raises(DataError, match=r"zero.csv: expected a regular data file, got a device"):
        read_arrays(device)
    with pytest.raises(DataError, match="regular data file"):
        read_scoring_data(device)


# -- PNG folders -------------------------------------------------------------------------------


def _png_head(width: int, height: int, depth: int, colour: int) -> bytes:
    """A PNG signature and IHDR chunk, all a reader needs to know the image's size."""
    fields = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    chunk = b"IHDR" + fields
    return (
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    )


@pytest.fixture(scope="session")
def big_pngs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three 9,000 x 9,000 black images: 243 million pixels in about 240 kB of files."""
    folder = tmp_path_factory.mktemp("big-pngs")
    Image.new("L", (9000, 9000)).save(folder / "0.png")
    for index in (1, 2):
        (folder / f"{index}.png").write_bytes((folder / "0.png").read_bytes())
    return folder


def test_a_png_folder_is_measured_from_its_headers_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for index in range(3):
        Image.new("L", (3000, 3000)).save(tmp_path / f"{index}.png")
    # 27 million values take about 0.8 GB in fit; with 1 GB of memory, 0.8 GB allowed.
    monkeypatch.setattr(memory, "total_memory", lambda: 10**9)
    tracemalloc.start()
    try:
        with pytest.raises(ResourceError, match=r"27,000,000 values\) would need 864.0 MB"):
            read_arrays(tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5e6  # nothing was decoded


def test_pillows_bomb_warning_becomes_our_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    Image.new("L", (40, 40), 255).save(tmp_path / "a.png")  # 1,600 pixels: Pillow warns
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_arrays(tmp_path)["data"].shape == (1, 40, 40)
    Image.new("L", (50, 50)).save(tmp_path / "b.png")
    (tmp_path / "a.png").unlink()
    with pytest.raises(DataError, match=r"b.png: expected an image of at most 2,000 pixels"):
        read_arrays(tmp_path)


def test_16_bit_grey_pngs_keep_their_values(tmp_path: Path) -> None:
    pixels = np.array([[55746, 0, 65533], [1, 2, 3]], dtype=np.uint16)
    for index in range(3):
        Image.fromarray(pixels + index).save(tmp_path / f"{index}.png")
    data = read_arrays(tmp_path)["data"]
    assert data[0].tolist() == pixels.tolist() and data.max() == 65535
    assert load_dataset("file", path=str(tmp_path)).num_values == 65536


def test_16_bit_colour_and_mixed_depths_are_refused(tmp_path: Path) -> None:
    colour = tmp_path / "colour"
    colour.mkdir()
    (colour / "a.png").write_bytes(_png_head(4, 4, 16, 2))
    with pytest.raises(DataError, match="a.png: 16-bit colour PNGs are not supported"):
        read_arrays(colour)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.fromarray(np.zeros((4, 4), dtype=np.uint16)).save(mixed / "a.png")
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(mixed / "b.png")
    with pytest.raises(DataError, match=r"one bit depth, got 16-bit \(a.png\) and 8-bit"):
        read_arrays(mixed)


def test_a_truncated_png_names_the_file(tmp_path: Path) -> None:
    noise = RNG.integers(0, 256, size=(64, 64), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "a.png")
    whole = (tmp_path / "a.png").read_bytes()
    (tmp_path / "a.png").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(
        DataError, match=r"a.png: expected a PNG image, got an unreadable file"
    ) as caught:
        read_arrays(tmp_path)
    assert "\n" not in str(caught.value)


# -- hostile files from the command line: one line, bounded memory ------------------------------

REPO_ROOT = Path(__file__).parents[1]


@pytest.mark.slow
def test_bombs_end_in_one_line_with_bounded_memory(tmp_path: Path, big_pngs: Path) -> None:
    env = {**offline_env(tmp_path), "PYTHONPATH": str(REPO_ROOT)}
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    # 10,000 images announced (7.8 MB), 2 GB inflated from 2 MB.
    head = bytes([0, 0, 8, 3]) + struct.pack(">3i", 10_000, 28, 28)
    write_gzip_bomb(mnist / "train-images-idx3-ubyte.gz", head, 2048)
    write_idx(np.zeros((3, 28, 28), dtype=np.uint8), mnist / "t10k-images-idx3-ubyte.gz")
    runs = [
        ["fit", "--data", "mnist", "--data-dir", str(mnist)],
        ["fit", "--data", str(big_pngs)],
    ]
    for args in runs:
        # 6 GB of data memory: the 3 images at 32 bytes a value (7.8 GB) are refused.
        outcome = run_cli(
            [*args, "--quiet", "--out", str(tmp_path / "run")], env=env, memory_limit_mb=6000
        )
        assert outcome.one_line_error(), outcome.stderr[-2000:]
        assert outcome.max_rss_mb < 1500, (args, outcome.max_rss_mb)
        assert not (tmp_path / "run").exists()


def test_fit_says_when_it_took_a_first_row_as_a_header(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from densitykit.cli import app

    rows = "\n".join(",".join(map(str, row)) for row in CODES)
    named = _csv(tmp_path / "named.csv", "a,b,c\n" + rows)
    plain = _csv(tmp_path / "plain.csv", rows)
    said = []
    for path in (named, plain):
        result = CliRunner().invoke(
            app, ["fit", "--data", str(path), "--hidden-sizes", "8", "--epochs", "1", "--quiet",
                  "--out", str(tmp_path / path.stem)],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        said.append("taken as a header" in result.output)
    assert said == [True, False]
