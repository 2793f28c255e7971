"""Asynchronous checkpoints whose background write fails once, under ``on_error: warn``.

The failure is a real ``OSError`` (ENOSPC) raised by the background writer of the first
save (the writer is swapped for one that fails once, then writes as usual). Without a
preemption the run goes on and the next interval's checkpoint is written; with one, the
preemption checkpoint is written again, synchronously, before the run exits 75, and
resuming from it ends bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import errno
import logging
import os
import signal

import pytest
import torch

from accelwrap.runner import Runner, async_save
from accelwrap.runner.checkpoint_find import find_latest, read_state, verify_checkpoint
from accelwrap.runner.models import MLPClassifier
from accelwrap.runner.preemption import PREEMPTED_EXIT_CODE, Preempted


class SignallingMLP(MLPClassifier):
    """Sends SIGUSR1 to its own process during training forward number ``at``."""

    def __init__(self, at: int | None = None) -> None:
        torch.manual_seed(0)  # the same initial weights in every run of a test
        super().__init__(hidden_dims=[32], dropout=0.1)
        self.at, self.calls = at, 0

    def forward(self, inputs, labels):
        if self.training:
            self.calls += 1
            if self.calls == self.at:
                os.kill(os.getpid(), signal.SIGUSR1)
        return super().forward(inputs, labels)


def _runner(work_dir, model, interval: int, **extra) -> Runner:
    checkpoint = {"by_epoch": False, "interval": interval, "preempt_signals": ["usr1"],
                  "async": True, "on_error": "warn", "max_keep_ckpts": -1}
    return Runner(
        model=model, work_dir=str(work_dir),
        train_dataloader=dict(dataset=dict(type="DigitsDataset", split="train"), batch_size=128,
                              shuffle=True),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.1, momentum=0.9)),
        train_cfg=dict(by_epoch=True, max_epochs=2),
        default_hooks=dict(checkpoint=checkpoint, logger=dict(progress_bar=False,
                                                              trackers=None)),
        randomness=dict(seed=0), **extra)


@pytest.fixture
def fails_once(monkeypatch):
    """The first background write of weights and optimizer state fails with ENOSPC."""
    real, calls = async_save.write_big_files, []

    def write(folder, weights, optimizers):
        calls.append(folder.name)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(folder / "x.bin"))
        real(folder, weights, optimizers)

    monkeypatch.setattr(async_save, "write_big_files", write)
    return calls


@pytest.fixture
def warnings():
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logging.getLogger("accelwrap").addHandler(handler)
    yield lines
    logging.getLogger("accelwrap").removeHandler(handler)


def test_after_a_failed_background_write_the_next_interval_saves(tmp_path, fails_once,
                                                                  warnings):
    _runner(tmp_path, SignallingMLP(), interval=4).train()  # 12 iterations per epoch
    checkpoints = tmp_path / "checkpoints"
    assert fails_once[:2] == [".tmp-iter_4", ".tmp-iter_8"]
    assert not (checkpoints / "iter_4").exists()
    assert [x for x in warnings if "was not saved" in x][0].startswith(
        "checkpoint 'iter_4' was not saved: writing .tmp-iter_4/x.bin failed (ENOSPC")
    assert find_latest(checkpoints) == checkpoints / "iter_24"
    for name in ("iter_8", "iter_24"):
        verify_checkpoint(checkpoints / name)


def test_a_preemption_checkpoint_whose_background_write_failed_is_written_again(
        tmp_path, fails_once, warnings):
    fails_once.append("spent")  # the reference writes normally (its last save must land)
    reference = _runner(tmp_path / "reference", SignallingMLP(), interval=100)
    reference_state = reference.train().state_dict()
    fails_once.clear()  # the next write fails again
    work = tmp_path / "work"
    with pytest.raises(Preempted) as stop:
        _runner(work, SignallingMLP(at=5), interval=100).train()
    assert stop.value.code == PREEMPTED_EXIT_CODE
    assert fails_once == [".tmp-iter_5"]  # the signal came during iteration 5
    assert any("'iter_5' was not saved" in x for x in warnings)
    assert any("again, synchronously" in x for x in warnings)
    assert stop.value.checkpoint == str(work / "checkpoints" / "iter_5")
    verify_checkpoint(work / "checkpoints" / "iter_5")
    assert read_state(work / "checkpoints" / "iter_5")["iter"] == 5
    resumed = _runner(work, SignallingMLP(), interval=100, resume="auto").train().state_dict()
    assert reference_state.keys() == resumed.keys()
    assert all(torch.equal(resumed[k], reference_state[k]) for k in reference_state)
