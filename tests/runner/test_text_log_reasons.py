"""The run's text log says why a run stopped and why a resume fell back, as the console does.

Real processes run ``scripts/train.py``: a save that fails on a full disk (a small tmpfs on
``<work_dir>/checkpoints`` in a private mount namespace, see ``test_save_failure.py``)
stops the run with one ``error:`` line on the console; the same message must end the text
log (``<work_dir>/<run>/<run>.log``), and the console must not show it twice. A run
killed (SIGKILL) after two checkpoints whose newest one is then damaged resumes with
``--resume auto`` from the older one; the lines saying so are logged before the run's
text log exists and must still be in it, once, before the resumed run's banner.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from accelwrap.runner.fault_points import KILL_ENV
from tests.distributed.launch import REPO
from tests.runner.helpers import run_dir
from tests.runner.test_save_failure import _env, _full_disk, _train_cmd, needs_unshare

pytestmark = pytest.mark.slow


def _text_log(work) -> list[str]:
    """The text log's lines, each without its ``date - accelwrap - `` prefix."""
    path = run_dir(work) / f"{run_dir(work).name}.log"
    return [line.split(" - accelwrap - ", 1)[-1]
            for line in path.read_text(encoding="utf-8").splitlines()]


@needs_unshare
def test_a_save_that_stops_the_run_is_the_last_line_of_its_text_log(tmp_path):
    work = tmp_path / "run"
    proc = _full_disk(work, "+default_hooks.checkpoint.on_error=raise")
    assert proc.returncode == 1, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if "was not saved" in line]
    assert len(errors) == 1 and errors[0].startswith("error: "), proc.stderr[-3000:]
    message = errors[0].removeprefix("error: ")
    assert "checkpoint 'epoch_2' was not saved" in message
    assert _text_log(work)[-1] == f"ERROR - {message}"


def test_the_resume_auto_fallback_is_in_the_text_log(tmp_path):
    work = tmp_path / "run"
    args = ["train_cfg.max_epochs=2", "+default_hooks.checkpoint.by_epoch=false",
            "default_hooks.checkpoint.interval=2", "default_hooks.checkpoint.max_keep_ckpts=3"]
    killed = subprocess.run(_train_cmd(work, *args), env={**_env(), KILL_ENV: "iter:5"},
                            cwd=REPO, capture_output=True, text=True, timeout=240)
    assert killed.returncode == -9, killed.stderr[-3000:]
    checkpoints = work / "checkpoints"
    damaged = checkpoints / "iter_4" / "random_states_0.pkl"
    os.truncate(damaged, 100)
    proc = subprocess.run([*_train_cmd(work, *args), "--resume", "auto"], env=_env(), cwd=REPO,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    skipped = f"WARNING - resume auto: skipped {checkpoints / 'iter_4'}: random_states_0.pkl"
    resuming = (f"WARNING - resume auto: resuming from {checkpoints / 'iter_2'}, the newest "
                f"intact checkpoint")
    log = _text_log(work)
    banners = [i for i, line in enumerate(log) if line == "INFO - run started"]
    assert len(banners) == 2, log  # the killed run's and the resumed run's
    found = [i for i, line in enumerate(log) if line.startswith((skipped, resuming))]
    assert [log[i].startswith(skipped) for i in found] == [True, False], log
    assert banners[0] < found[0] < found[1] < banners[1], log
    for text in (skipped, resuming):  # and once on the console, as before
        assert proc.stderr.count(text.removeprefix("WARNING - ")) == 1, proc.stderr[-3000:]


def test_a_refused_checkpoint_still_leaves_no_text_log(tmp_path):
    """An error before the run starts writes nothing into the folder (as before)."""
    work = tmp_path / "run"
    missing = tmp_path / "nowhere" / "iter_4"
    proc = subprocess.run([*_train_cmd(work, "train_cfg.max_epochs=1"), "--resume", str(missing)],
                          env=_env(), cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 1 and "error: " in proc.stderr, proc.stderr[-3000:]
    assert not list(work.glob("*/*.log"))
