"""The wrapper's update counters and spike window survive a checkpoint (Runner save + resume).

A run saved at iteration 40 and resumed has exactly the saved counters and spike window,
and a longer resumed run counts on from them; a high learning rate and a tight ``sigmas``
make the spike rule skip real updates, so the counters are not trivially zero.
"""

from __future__ import annotations

import json

import pytest

from tests.runner.helpers import run

SETTINGS = ["train_cfg.max_iters={iters}", "train_cfg.val_interval=1000",
            "default_hooks.checkpoint.interval=40", "default_hooks.logger.interval=10",
            "param_scheduler.0.end=8", "param_scheduler.1.begin=8",
            "+param_scheduler.1.end=80",  # the same schedule in the cut run
            "optim_wrapper.optimizer.lr=1.0",  # a jumpy loss: the spike rule really skips
            "+optim_wrapper.spike={{window: 3, sigmas: 0.5}}",
            "+optim_wrapper.nonfinite={{policy: skip}}"]


def _run(work_dir, iters: int, *extra: str):
    return run("digits_amp_bf16_accum", work_dir, *(s.format(iters=iters) for s in SETTINGS),
               *extra)


@pytest.mark.slow
def test_counters_and_spike_window_survive_save_and_resume(tmp_path):
    first = _run(tmp_path, 40).optim_wrapper.progress_state()
    assert first["spike_skips"] > 0 and first["updates"] == 10
    saved = json.loads((tmp_path / "checkpoints" / "iter_40" / "runner_state.json").read_text())
    assert saved["wrappers"][""]["progress"] == first  # one wrapper: no member name
    restored = _run(tmp_path, 40, "+resume=true").optim_wrapper  # nothing left to train
    assert restored.progress_state() == first
    assert restored.spike_skips == first["spike_skips"]
    longer = _run(tmp_path, 80, "+resume=true").optim_wrapper.progress_state()
    assert longer["updates"] == 20 and longer["spike_skips"] >= first["spike_skips"]
