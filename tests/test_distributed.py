"""Data-parallel training: rank sharding, loss weighting, and a real 2-process torchrun run."""

from __future__ import annotations

import ast
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from helpers import head_num_values, head_options, head_values
from typer.testing import CliRunner

import densitykit
from densitykit import distributed
from densitykit.checkpoint import load_object, read_json
from densitykit.cli import app
from densitykit.distributed import (
    BatchLogProb,
    DistributedContext,
    launch_environment,
    shard,
    sharded_loss,
)
from densitykit.errors import DensitykitError

REPO = Path(__file__).resolve().parents[1]
RUN_FILES = {
    "checkpoint.pt",
    "config.json",
    "density.png",
    "learning_curves.png",
    "metrics.json",
    "metrics.jsonl",
    "train_state.pt",
    ".densitykit.lock",  # rank 0's lock on the folder it writes
}
# 4264 smiley samples leave 3070 = 31 * 99 + 1 training examples: with a global batch of
# 99 every step splits 50/49 over two ranks and the last step 1/0 (an empty shard);
# the 341 validation and 853 test examples split unevenly too. Three random masks
# check that the mask cycling stays in step on both ranks.
TINY = [
    "--data", "2d-smiley", "--grid-size", "16", "--data-option", "num_samples=4264",
    "--hidden-sizes", "16", "--masks", "random", "--num-masks", "3",
    "--epochs", "2", "--batch-size", "99", "--quiet", "--device", "cpu",
]  # fmt: skip
# Float32 sums in a different order (per-rank shards, then the all-reduce) are the
# only difference from one process; measured at about 3e-8 after 64 Adam steps.
WEIGHT_TOLERANCE = 1e-5


# -- the sharding helper --------------------------------------------------------------------
@pytest.mark.parametrize("world_size", range(1, 8))
def test_shards_cover_every_global_batch_exactly_once_in_rank_order(world_size: int) -> None:
    for length in range(0, 3 * world_size + 2):
        shares = [range(length)[shard(length, rank, world_size)] for rank in range(world_size)]
        assert [i for share in shares for i in share] == list(range(length))
        sizes = [len(share) for share in shares]
        assert max(sizes) - min(sizes) <= 1
        assert sizes == sorted(sizes, reverse=True)  # earlier ranks take the extra items


@pytest.mark.parametrize(
    ("length", "rank", "world_size"), [(-1, 0, 2), (4, 2, 2), (4, -1, 2), (4, 0, 0)]
)
def test_shard_refuses_bad_arguments(length: object, rank: int, world_size: int) -> None:
    with pytest.raises(ValueError, match="length"):
        shard(length, rank, world_size)  # type: ignore[arg-type]


def test_shard_takes_integer_like_numbers_and_refuses_floats() -> None:
    assert shard(np.int64(5), np.int32(1), 2) == shard(5, 1, 2) == slice(3, 5)
    with pytest.raises(TypeError, match="length must be an integer, got float"):
        shard(4.0, 0, 2)  # type: ignore[arg-type]


# -- the loss weighting, simulated in one process ------------------------------------------
@pytest.mark.parametrize("head", densitykit.heads.names())
@pytest.mark.parametrize(("batch_size", "world_size"), [(99, 2), (7, 3), (2, 4), (1, 2)])
def test_weighted_shard_losses_average_to_the_global_batch_gradient(
    head: str, batch_size: int, world_size: int
) -> None:
    """DDP's gradient average over ranks equals the single-process gradient of the mean."""
    num_values = head_num_values(head, 8)
    torch.manual_seed(0)
    model = densitykit.create_model(
        head,
        3,
        num_values,
        hidden_sizes=(16,),
        masks="random",
        num_masks=2,
        seed=0,
        **head_options(head, 3),
    )
    generator = torch.Generator().manual_seed(0)
    train = head_values(head, (batch_size + 5, 3), num_values, generator=generator)
    indices = torch.randperm(train.shape[0], generator=generator)[:batch_size]
    mask = 1 if model.family == "made" else None  # the histogram has no masks

    model.zero_grad()
    single = -model.training_log_prob(train[indices], mask).mean()
    single.backward()
    expected = [p.grad.clone() for p in model.parameters()]

    averaged = [torch.zeros_like(p) for p in model.parameters()]
    mean_nll = 0.0
    for rank in range(world_size):
        model.zero_grad()
        context = DistributedContext(rank, world_size, rank, "gloo")
        loss, value = sharded_loss(
            BatchLogProb(model), context, train, indices, mask, torch.device("cpu"), "fp32"
        )
        loss.backward()
        for total, parameter in zip(averaged, model.parameters()):
            total += parameter.grad / world_size  # what DDP's all-reduce mean computes
        mean_nll += value  # without a process group each rank's share of the mean
    for got, want in zip(averaged, expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert mean_nll == pytest.approx(single.item(), rel=1e-6)


def test_distributed_does_not_import_the_training_loop() -> None:
    """Layers import one way: train builds on distributed, never the reverse (not even
    inside a function)."""
    tree = ast.parse(Path(distributed.__file__).read_text())
    imported = {
        name
        for node in ast.walk(tree)
        for name in (
            [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else [alias.name for alias in getattr(node, "names", [])]
            if isinstance(node, ast.Import)
            else []
        )
    }
    assert "densitykit.checks" in imported  # the walk sees the module's imports
    assert not {
        name for name in imported if name.startswith(("densitykit.train", "densitykit.runs"))
    }


# -- the environment and the single-process path -------------------------------------------
def test_launch_environment_reads_what_torchrun_sets() -> None:
    assert launch_environment({}) is None
    assert launch_environment({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}) is None
    assert launch_environment({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == (3, 4, 1)
    assert launch_environment({"RANK": "1", "WORLD_SIZE": "2"}) == (1, 2, 0)
    for bad in (
        {"WORLD_SIZE": "2"},
        {"RANK": "2", "WORLD_SIZE": "2"},
        {"RANK": "x", "WORLD_SIZE": "2"},
        {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "-1"},
    ):
        with pytest.raises(DensitykitError):
            launch_environment(bad)


def test_backend_follows_the_device() -> None:
    assert distributed.backend_for(torch.device("cuda", 0)) == "nccl"
    assert distributed.backend_for(torch.device("cpu")) == "gloo"


def test_without_a_launch_nothing_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    with distributed.session("cpu") as context:
        assert context is None
        assert not (dist.is_available() and dist.is_initialized())
        assert distributed.current() is None and distributed.is_main()
        value = torch.tensor(2.5)
        assert distributed.all_reduce_sum(value) is value
        assert distributed.broadcast_from_main(value) is value
        assert distributed.on_main(lambda: 7) == 7
        distributed.check_same_on_all_ranks({"anything": 1})
        with distributed.local_main_first():
            pass


def test_fingerprint_tells_tensors_apart() -> None:
    a = torch.arange(6)
    assert distributed.fingerprint(a) == distributed.fingerprint(a.clone())
    assert distributed.fingerprint(a) != distributed.fingerprint(a.reshape(2, 3))
    assert distributed.fingerprint(a) != distributed.fingerprint(a.float())
    assert distributed.fingerprint(a) != distributed.fingerprint(a.flip(0))


# -- a real run: 2 CPU processes with gloo on loopback --------------------------------------
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _torchrun(
    args: list[str], cwd: Path, timeout: float, *, target: list[str] | None = None
) -> subprocess.CompletedProcess:
    """Two gloo processes running ``densitykit *args`` (or ``target``: a script and its
    arguments)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    if Path("/sys/class/net/lo").exists():
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # keep gloo on loopback
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
        *(target if target is not None else ["-m", "densitykit", *args]),
    ]  # fmt: skip
    # A session of its own, so a hung run can be stopped with all of its workers.
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"torchrun did not finish in {timeout} s\n{stdout}\n{stderr}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].numel())


@pytest.mark.slow
@pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed gloo"
)
@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["--masks", "natural", "--num-masks", "1", "--layout", "packed"],
        ["--masks", "any-order", "--num-masks", "2", "--mask-input"],
    ],
    ids=["dense-3-masks", "packed", "any-order"],
)
def test_two_gloo_processes_train_like_one_process_on_the_same_global_batch(
    tmp_path: Path, extra: list[str]
) -> None:
    workdir = tmp_path / "torchrun"
    workdir.mkdir()
    result = _torchrun(["fit", *TINY, *extra, "--out", "run"], cwd=workdir, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("test NLL") == 1  # only rank 0 reports
    assert [p.name for p in workdir.iterdir()] == ["run"]  # one run folder, nothing stray
    parallel = workdir / "run"
    assert {p.name for p in parallel.iterdir()} == RUN_FILES

    single = tmp_path / "single"
    outcome = CliRunner().invoke(app, ["fit", *TINY, *extra, "--out", str(single)])
    assert outcome.exit_code == 0, outcome.output

    assert read_json(parallel / "config.json") == read_json(single / "config.json")
    state_parallel = load_object(parallel / "train_state.pt")
    state_single = load_object(single / "train_state.pt")
    # The same number of steps and the same active mask: masks cycled in step.
    assert state_parallel["step"] == state_single["step"] == 2 * 32
    assert state_parallel["family_state"] == state_single["family_state"]
    assert _max_abs_diff(state_parallel["model"], state_single["model"]) < WEIGHT_TOLERANCE
    if "any-order" in extra:  # every rank drew the single process's 64 connectivities
        source = "connectivity_source_state"
        assert torch.equal(state_parallel["model"][source], state_single["model"][source])
    best_parallel = load_object(parallel / "checkpoint.pt")["state_dict"]
    best_single = load_object(single / "checkpoint.pt")["state_dict"]
    assert _max_abs_diff(best_parallel, best_single) < WEIGHT_TOLERANCE

    for record_parallel, record_single in zip(
        state_parallel["history"], state_single["history"], strict=True
    ):
        for key in ("train_nll", "val_nll"):
            assert record_parallel[key] == pytest.approx(record_single[key], abs=1e-5)
        assert record_parallel["improved"] == record_single["improved"]
    metrics_parallel = read_json(parallel / "metrics.json")
    metrics_single = read_json(single / "metrics.json")
    assert metrics_parallel["best_epoch"] == metrics_single["best_epoch"]
    assert metrics_parallel["test_nll_nats"] == pytest.approx(
        metrics_single["test_nll_nats"], abs=1e-5
    )


@pytest.mark.slow
@pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed gloo"
)
def test_a_class_conditional_run_trains_in_two_processes_like_in_one(tmp_path: Path) -> None:
    """The labels are sharded with their examples: the same weights as one process."""
    args = [
        "fit", "--data", "shapes", "--data-option", "size=8", "--data-option",
        "num_samples=1000", "--condition", "label", "--hidden-sizes", "16", "--epochs", "1",
        "--batch-size", "99", "--quiet", "--device", "cpu",
    ]  # fmt: skip
    workdir = tmp_path / "torchrun"
    workdir.mkdir()
    result = _torchrun([*args, "--out", "run"], cwd=workdir, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    single = tmp_path / "single"
    outcome = CliRunner().invoke(app, [*args, "--out", str(single)])
    assert outcome.exit_code == 0, outcome.output
    parallel = load_object(workdir / "run" / "train_state.pt")["model"]
    assert any("context" in key for key in parallel)
    assert (
        _max_abs_diff(parallel, load_object(single / "train_state.pt")["model"]) < WEIGHT_TOLERANCE
    )
    metrics = read_json(workdir / "run" / "metrics.json")
    assert metrics["condition"] == "label"
    assert metrics["test_nll_nats"] == pytest.approx(
        read_json(single / "metrics.json")["test_nll_nats"], abs=1e-4
    )


MIXED_SCRIPT = """
import sys
import torch
import densitykit as dk
from densitykit.distributed import is_main, session
from densitykit.train import TrainConfig, fit


def table(num, seed):
    generator = torch.Generator().manual_seed(seed)
    flag = (torch.rand(num, generator=generator) < 0.3).float()
    real = 2.0 * flag - 1.0 + 0.5 * torch.randn(num, generator=generator)
    code = torch.randint(0, 3, (num,), generator=generator).float()
    zero = torch.rand(num, generator=generator) < 0.4
    amount = torch.where(zero, 0.0, 1.0 + 0.3 * torch.randn(num, generator=generator))
    return torch.stack([flag, real, code, amount], 1)


with session("cpu"):
    torch.manual_seed(0)
    model = dk.create_model(
        "mixed", 4, 0, kinds=["binary", "real", "categorical:3", "spike:0"], num_components=2,
        hidden_sizes=(16,), masks="random", num_masks=2, seed=0,
    )
    config = TrainConfig(epochs=2, batch_size=99, lr=1e-2, patience=None, device="cpu")
    result = fit(model, table(991, 1), table(201, 2), config)
    if is_main():
        torch.save({"model": model.state_dict(), "history": result.history}, sys.argv[1])
"""


@pytest.mark.slow
@pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed gloo"
)
def test_a_mixed_head_trains_in_two_processes_like_in_one(tmp_path: Path) -> None:
    """Real, binary, categorical and spiked columns (per-variable widths) under DDP:
    the weights and losses of one process on the same global batches."""
    script = tmp_path / "mixed.py"
    script.write_text(MIXED_SCRIPT)
    result = _torchrun([], cwd=tmp_path, timeout=300, target=[str(script), "parallel.pt"])
    assert result.returncode == 0, result.stdout + result.stderr
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    single = subprocess.run(
        [sys.executable, str(script), "single.pt"], cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert single.returncode == 0, single.stdout + single.stderr
    parallel, alone = (torch.load(tmp_path / name) for name in ("parallel.pt", "single.pt"))
    assert _max_abs_diff(parallel["model"], alone["model"]) < WEIGHT_TOLERANCE
    for one, other in zip(parallel["history"], alone["history"], strict=True):
        assert one["train_nll"] == pytest.approx(other["train_nll"], abs=1e-5)
        assert one["val_nll"] == pytest.approx(other["val_nll"], abs=1e-5)
