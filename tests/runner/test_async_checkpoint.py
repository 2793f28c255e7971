"""Asynchronous checkpoints (``default_hooks.checkpoint.async: true``), in real processes.

A run that saves in the background is SIGKILLed by the runner's test hook inside a
background write (``ACCELWRAP_TEST_KILL=save:<iter>``: the files are written, the folder
not yet published, training already going on): the previous, asynchronously written
checkpoint must stay the loadable ``latest``, and ``--resume auto`` from it must end with
weights bit-identical to an uninterrupted synchronous run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch
from safetensors.torch import load_file

from accelwrap.errors import ConfigError
from accelwrap.runner import Runner
from accelwrap.runner.async_save import AsyncWriter, async_refusal
from accelwrap.runner.checkpoint_find import find_latest, verify_checkpoint
from tests.distributed.launch import REPO
from tests.runner.helpers import QUIET, config, run

NAME = "digits_adamw_cosine"
EPOCHS = ["train_cfg.max_epochs=3", "default_hooks.checkpoint.max_keep_ckpts=-1"]
ASYNC = "+default_hooks.checkpoint.async=true"


def _limit_file_size(limit: int) -> None:
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def _train(work, *extra, kill=None, preexec_fn=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("ACCELWRAP_TEST_KILL", None)
    if kill:
        env["ACCELWRAP_TEST_KILL"] = kill
    cmd = [sys.executable, str(REPO / "scripts" / "train.py"), "--config",
           f"configs/{NAME}.yaml", "--work-dir", str(work), *QUIET, *EPOCHS, ASYNC, *extra]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
                          preexec_fn=preexec_fn)


def test_kill_in_a_background_write_keeps_the_last_checkpoint_and_resume_is_exact(tmp_path):
    reference = run(NAME, tmp_path / "sync", *EPOCHS)
    per_epoch = reference.epoch_length
    work = tmp_path / "async"
    killed = _train(work, kill=f"save:{2 * per_epoch}")  # inside epoch_2's background write
    assert killed.returncode == -9, killed.stderr[-2000:]
    checkpoints = work / "checkpoints"
    assert (checkpoints / ".tmp-epoch_2").is_dir()  # written, never published
    assert find_latest(checkpoints) == checkpoints / "epoch_1"
    verify_checkpoint(checkpoints / "epoch_1")  # every file matches its manifest
    resumed = _train(work, "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "epoch_1" in resumed.stderr + resumed.stdout
    want = load_file(tmp_path / "sync" / "checkpoints" / "epoch_3" / "model.safetensors")
    got = load_file(checkpoints / "epoch_3" / "model.safetensors")
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(want[key], got[key]), key


def test_async_run_publishes_every_checkpoint_before_it_ends(tmp_path):
    runner = Runner.from_cfg(config(NAME, tmp_path, "train_cfg.max_epochs=2", ASYNC,
                                    "default_hooks.checkpoint.max_keep_ckpts=-1"))
    assert runner.checkpoint_cfg.async_save
    runner.train()
    checkpoints = tmp_path / "checkpoints"
    assert find_latest(checkpoints) == checkpoints / "epoch_2"
    for name in ("epoch_1", "epoch_2"):
        verify_checkpoint(checkpoints / name)
    assert not list(checkpoints.glob(".tmp-*"))


def test_a_background_write_failure_stops_the_run_with_the_one_line(tmp_path):
    # The small files fit under the limit; the weights and optimizer state, written in
    # the background, do not: the next save reports it as a synchronous save would.
    work = tmp_path / "run"
    proc = _train(work, "train_cfg.max_epochs=2", preexec_fn=lambda: _limit_file_size(40_000))
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    line = [x for x in proc.stderr.splitlines() if "was not saved" in x]
    assert len(line) == 1 and "checkpoint 'epoch_1'" in line[0], proc.stderr[-3000:]
    assert "File too large" in line[0] and "there is no earlier checkpoint" in line[0]
    assert list((work / "checkpoints").iterdir()) == []  # the partial folder is removed


def test_engines_without_a_background_path_are_named_and_save_synchronously():
    # Several processes (DDP) and FSDP2 sharded save in the background
    # (tests/distributed/test_async_checkpoint.py); DeepSpeed does not.
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    ddp = SimpleNamespace(scaler=None, num_processes=2, distributed_type=DistributedType.MULTI_CPU)
    assert async_refusal(ddp) is None
    deepspeed = SimpleNamespace(scaler=None, num_processes=2,
                                distributed_type=DistributedType.DEEPSPEED)
    note = async_refusal(deepspeed)
    assert note.startswith("default_hooks.checkpoint.async: true is supported with one process, "
                           "DDP and FSDP2") and "DEEPSPEED" in note and "synchronously" in note


def test_the_next_save_waits_for_the_previous_one_and_gets_its_failure():
    writer, order, failures = AsyncWriter(), [], []

    def slow() -> None:
        time.sleep(0.3)
        order.append("first done")

    def broken() -> None:
        raise OSError(28, "No space left on device")

    writer.start(slow, failures.append)
    assert writer.busy
    writer.start(lambda: order.append(f"second starts, thread {threading.current_thread().name}"),
                 failures.append)
    writer.wait()
    assert order[0] == "first done" and order[1].startswith("second starts")
    assert "accelwrap-checkpoint" in order[1]  # not the caller's thread
    writer.start(broken, failures.append)
    assert failures == []  # reported only when waited for
    writer.wait()
    assert [err.errno for err in failures] == [28]
    assert not writer.busy


def test_async_must_be_a_boolean(tmp_path):
    with pytest.raises(ConfigError, match=r"default_hooks\.checkpoint\.async: expected"):
        Runner.from_cfg(config(NAME, tmp_path, "+default_hooks.checkpoint.async=yes"))
