"""Asynchronous checkpoints with 2 processes over gloo, through the command users run.

``default_hooks.checkpoint.async: true`` with ``accelerate launch`` (DDP, and FSDP2 through
``launch_configs/fsdp.yaml``): every checkpoint is published before the run ends; one rank
SIGKILLed inside a background write (``ACCELWRAP_TEST_KILL=save-rank<R>:<iter>``: its
files are written, the ranks have not agreed yet, training already goes on) leaves the
previous, asynchronously written checkpoint ``latest`` and intact, and ``--resume auto``
from it ends bit-identical to the uninterrupted run. A background write that fails on
every rank with ``on_error: warn`` is reported once per checkpoint, and training goes on
to the end, trying again at every interval.
"""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from accelwrap.runner.checkpoint_find import find_latest, verify_checkpoint
from accelwrap.runner.save_failure import LAST_SAVE_FAILED_EXIT_CODE
from tests.distributed.launch import REPO, _env
from tests.distributed.test_fsdp_command import checkpoint, files, launch
from tests.distributed.train_cli import CPU_2PROC, TRAIN, train

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

# 1,438 training digits, 64 per process: 12 iterations per epoch on 2 processes.
ARGS = ["--config", "configs/digits_adamw_cosine.yaml", "train_cfg.max_epochs=2",
        "train_dataloader.batch_size=64", "val_dataloader.batch_size=512",
        "param_scheduler.0.end=6", "default_hooks.logger.progress_bar=false",
        "default_hooks.logger.trackers=null", "+default_hooks.checkpoint.by_epoch=false",
        "default_hooks.checkpoint.interval=4", "default_hooks.checkpoint.max_keep_ckpts=10",
        "+default_hooks.checkpoint.async=true"]


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted 2-process async run: every checkpoint published, all intact."""
    work = tmp_path_factory.mktemp("async_ddp") / "reference"
    train(work, ARGS, nproc=2)
    checkpoints = work / "checkpoints"
    assert find_latest(checkpoints) == checkpoints / "iter_24"
    assert sorted(p.name for p in checkpoints.iterdir() if p.name.startswith("iter_")) == [
        f"iter_{i}" for i in (12, 16, 20, 24, 4, 8)]
    for folder in checkpoints.glob("iter_*"):
        verify_checkpoint(folder)
        assert {"random_states_0.pkl", "random_states_1.pkl", "optimizer.bin"} <= {
            p.name for p in folder.iterdir()}
    assert not list(checkpoints.glob(".tmp-*"))
    return checkpoints / "iter_24"


def test_a_rank_killed_in_a_background_write_keeps_the_last_checkpoint(tmp_path, reference):
    # Rank 1 dies in the write of iter_8, then (resumed from iter_4) rank 0 in that of iter_16.
    work = tmp_path / "work"
    checkpoints = work / "checkpoints"
    for rank, iteration, kept in ((1, 8, "iter_4"), (0, 16, "iter_12")):
        resume = ["--resume", "auto"] if checkpoints.exists() else []
        killed = train(work, [*ARGS, *resume], nproc=2,
                       env={"ACCELWRAP_TEST_KILL": f"save-rank{rank}:{iteration}"}, check=False)
        assert killed.returncode != 0
        assert find_latest(checkpoints) == checkpoints / kept, killed.stderr[-3000:]
        assert not (checkpoints / f"iter_{iteration}").exists()  # never agreed: unpublished
        verify_checkpoint(checkpoints / kept)
    resumed = train(work, [*ARGS, "--resume", "auto"], nproc=2)
    assert "iter_12" in resumed.stdout + resumed.stderr
    final = find_latest(checkpoints)
    assert final.name == "iter_24"
    want, got = _weights(reference), _weights(final)
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(want[key], got[key]), key


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death
    resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))


def _with_file_size_limit(work: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CPU_2PROC),
           str(TRAIN), "--work-dir", str(work), *ARGS, "default_hooks.checkpoint.interval=8",
           *extra]
    results = work.parent / f"results_{work.name}"
    results.mkdir(parents=True)
    return subprocess.run(cmd, env=_env(results, None), cwd=REPO, capture_output=True,
                          text=True, timeout=120, preexec_fn=_limit_file_size)


def test_a_failing_background_write_under_warn_is_reported_and_training_goes_on(tmp_path):
    # The small files fit under the limit; the weights and the optimizer state do not.
    work = tmp_path / "warn"
    proc = _with_file_size_limit(work, "+default_hooks.checkpoint.on_error=warn")
    err = proc.stderr
    lines = [x for x in err.splitlines() if "was not saved:" in x]  # the warnings
    assert [name for name in ("iter_8", "iter_16", "iter_24")
            if sum(f"checkpoint '{name}'" in x for x in lines) == 1] == \
        ["iter_8", "iter_16", "iter_24"], err[-4000:]
    assert all("File too large" in x and "training continues" in x for x in lines)
    # Training went on to the end; its last save failing too, the run ends with status 74
    # (the launcher then exits 1 and names the workers' status).
    assert "training reached iter 24, but its last checkpoint 'iter_24' was not saved" in err
    assert "finished at iter 24" not in err
    assert proc.returncode != 0 and f"exitcode  : {LAST_SAVE_FAILED_EXIT_CODE}" in err
    assert "accelwrap/" not in err.split("ChildFailedError")[0]  # no traceback of ours
    assert list((work / "checkpoints").iterdir()) == []  # no partial folder stays


def test_a_failing_background_write_under_raise_stops_the_run_at_the_next_save(tmp_path):
    work = tmp_path / "raise"
    proc = _with_file_size_limit(work)
    assert proc.returncode != 0
    lines = {x.split("checkpoint 'iter_8' was not saved: ", 1)[-1]
             for x in proc.stderr.splitlines() if "checkpoint 'iter_8' was not saved" in x}
    assert len(lines) == 1, proc.stderr[-4000:]  # the same line on every rank
    assert "File too large" in lines.pop()
    assert "was not saved" not in proc.stderr.replace("'iter_8' was not saved", "")
    assert "Epoch(train) [2][ 5/12]" not in proc.stderr  # stopped at the save of iter_16
    assert list((work / "checkpoints").iterdir()) == []


def test_fsdp2_async_shards_are_published_and_resume_exactly(tmp_path):
    work = tmp_path / "fsdp"
    launch(work, 2, ["+default_hooks.checkpoint.async=true"])
    final = checkpoint(work)
    assert final.name == "iter_24"
    for name in ("iter_8", "iter_24"):
        verify_checkpoint(checkpoint(work, name))
    shards = sorted(p.name for p in (final / "pytorch_model_fsdp_0").iterdir())
    assert shards == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    assert (final / "optimizer_0").is_dir() and not (final / "model.safetensors").exists()
    resumed = tmp_path / "resumed"
    launch(resumed, 2, ["+default_hooks.checkpoint.async=true", "--resume",
                        str(checkpoint(work, "iter_8"))])
    assert checkpoint(resumed).name == "iter_24"
    assert files(checkpoint(resumed)) == files(final)
