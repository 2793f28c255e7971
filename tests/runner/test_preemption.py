"""Preemption in one process: a configured signal stops the run at a clean point, resumably.

The real command (1 and 2 processes, signals from outside) is tested in
``tests/distributed/test_preemption.py``; here the model itself sends a real signal to
its own process at a chosen forward, so the stopping point is exact.
"""

from __future__ import annotations

import os
import signal

import pytest
import torch

from accelwrap.errors import ConfigError
from accelwrap.runner import Runner
from accelwrap.runner.checkpoint import read_state
from accelwrap.runner.default_hooks import parse_default_hooks
from accelwrap.runner.models import MLPClassifier
from accelwrap.runner.preemption import PREEMPTED_EXIT_CODE, Preempted, parse_preempt_signals
from accelwrap.runner.train_cfg import TrainSchedule


class SignallingMLP(MLPClassifier):
    """Sends ``signum`` to its own process during training forward number ``at``."""

    def __init__(self, at: int | None = None, signum: int = signal.SIGUSR1) -> None:
        torch.manual_seed(0)  # the same initial weights in every run of a test
        super().__init__(hidden_dims=[32], dropout=0.1)
        self.at, self.signum, self.calls = at, signum, 0

    def forward(self, inputs, labels):
        if self.training:
            self.calls += 1
            if self.calls == self.at:
                os.kill(os.getpid(), self.signum)
        return super().forward(inputs, labels)


def _runner(work_dir, model, **extra) -> Runner:
    return Runner(
        model=model, work_dir=str(work_dir),
        train_dataloader=dict(dataset=dict(type="DigitsDataset", split="train"), batch_size=128,
                              shuffle=True),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.1, momentum=0.9),
                           accumulative_counts=2),
        train_cfg=dict(by_epoch=True, max_epochs=2),
        default_hooks=dict(checkpoint=dict(by_epoch=False, interval=100,
                                           preempt_signals=["SIGTERM", "usr1"]),
                           logger=dict(progress_bar=False, trackers=None)),
        randomness=dict(seed=0), **extra)


def test_a_signal_inside_an_accumulation_window_saves_at_its_end_and_resumes_exactly(tmp_path):
    reference = _runner(tmp_path / "reference", SignallingMLP()).train().state_dict()
    work = tmp_path / "work"
    before = signal.getsignal(signal.SIGUSR1)
    with pytest.raises(Preempted) as stop:
        _runner(work, SignallingMLP(at=5)).train()  # iteration 5 opens a window of 2
    assert stop.value.code == PREEMPTED_EXIT_CODE == 75
    assert (stop.value.signal_name, stop.value.iteration) == ("SIGUSR1", 6)
    assert stop.value.checkpoint == str(work / "checkpoints" / "iter_6")
    assert read_state(work / "checkpoints" / "iter_6")["iter"] == 6
    assert signal.getsignal(signal.SIGUSR1) == before  # handlers put back
    assert not (work / "accelwrap.lock").exists()
    resumed = _runner(work, SignallingMLP(), resume="auto").train().state_dict()
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)


def test_a_signal_at_the_last_iteration_lets_the_run_finish(tmp_path):
    runner = _runner(tmp_path, SignallingMLP(at=24))  # 12 iterations per epoch, 2 epochs
    runner.train()
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "iter_24"


def test_signals_not_configured_are_left_alone(tmp_path):
    runner = _runner(tmp_path, SignallingMLP())
    assert runner.checkpoint_cfg.preempt_signals == ("SIGTERM", "SIGUSR1")
    ignored = parse_default_hooks(dict(checkpoint=dict(preempt_signals=[])),
                                  TrainSchedule(max_epochs=1))[0]
    assert ignored.preempt_signals == ()


@pytest.mark.parametrize(("value", "message"), [
    ("SIGKILL", "'SIGKILL' cannot be caught"),
    (["TERM", "SIGTREM"], "unknown signal 'SIGTREM' (did you mean 'SIGTERM'"),
    ([15], "got 15 in [15]"),
    (True, "got True"),
])
def test_bad_preempt_signals_are_named(value, message):
    with pytest.raises(ValueError) as err:
        parse_preempt_signals(value)
    assert message in str(err.value)
    assert str(err.value).startswith("default_hooks.checkpoint.preempt_signals: ")
    with pytest.raises(ConfigError) as err:
        parse_default_hooks(dict(checkpoint=dict(preempt_signals=value)),
                            TrainSchedule(max_epochs=1))
    assert message in str(err.value)


def test_names_are_canonical_and_deduplicated():
    assert parse_preempt_signals(["term", "SIGTERM", "Usr1"]) == ("SIGTERM", "SIGUSR1")
