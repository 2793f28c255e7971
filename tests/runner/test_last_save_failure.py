"""``on_error: warn``: a run whose last save fails must not end as finished (exit status 74).

Real processes run ``scripts/train.py`` as users do; the write failures are the kernel's:
a full disk (a small tmpfs on ``<work_dir>/checkpoints`` in a private mount namespace,
as in ``test_save_failure.py``), or ``RLIMIT_FSIZE`` during chosen saves only (writes past
it fail with ``EFBIG``). A failed save with a later one to retry at keeps training and ends
with status 0; a failed last save (synchronous, or an ``async`` one failing in the
background) ends with status 74 and a last line naming the checkpoint that stays, the
one ``--resume auto`` continues from, in the console and in the run's text log.
"""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest

from accelwrap.runner.save_failure import LAST_SAVE_FAILED_EXIT_CODE
from tests.distributed.launch import REPO
from tests.runner.helpers import run_dir
from tests.runner.test_save_failure import _env, _train_cmd, needs_unshare

pytestmark = pytest.mark.slow

WARN = "+default_hooks.checkpoint.on_error=warn"
AUTO = ("import sys; from accelwrap.runner.checkpoint_find import resolve_resume; "
        "print('AUTO', resolve_resume('auto', sys.argv[1]))")

# Runs scripts/train.py; saves number $FAIL_SAVES (comma-separated, 1-based) run under a
# file-size limit of $FAIL_LIMIT bytes, lifted once the save's writes are over (after the
# next wait() for an async save: its background write).
WORKER = """\
import os, resource, runpy, signal, sys
from accelwrap.runner.checkpoint import CheckpointManager
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death
failing = {int(n) for n in os.environ["FAIL_SAVES"].split(",")}
limit, hard = int(os.environ["FAIL_LIMIT"]), resource.getrlimit(resource.RLIMIT_FSIZE)[1]
save, wait, calls = CheckpointManager.save, CheckpointManager.wait, []
def lift():
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
def limited_save(self, *args, **kwargs):
    calls.append(1)
    if len(calls) not in failing:
        return save(self, *args, **kwargs)
    self.wait()  # the previous save's background write is not limited
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        return save(self, *args, **kwargs)
    finally:
        if not self._writer.busy:
            lift()
def lifting_wait(self):
    busy = self._writer.busy  # a limited background write (else: save's own first wait)
    try:
        wait(self)
    finally:
        if busy:
            lift()
CheckpointManager.save, CheckpointManager.wait = limited_save, lifting_wait
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _limited(tmp_path, work, saves: str, limit: int, *extra: str) -> subprocess.CompletedProcess:
    worker = tmp_path / "limited.py"
    worker.write_text(WORKER)
    # A save an epoch; a short text log, which the limit must not reach.
    cmd = _train_cmd(work, "train_cfg.max_epochs=3", "default_hooks.logger.interval=3", WARN,
                     *extra)
    return subprocess.run([sys.executable, str(worker), *cmd[1:]], cwd=REPO, capture_output=True,
                          text=True, timeout=240,
                          env={**_env(), "FAIL_SAVES": saves, "FAIL_LIMIT": str(limit),
                               "PYTHONPATH": str(REPO)})


def _last_line(proc: subprocess.CompletedProcess) -> str:
    return proc.stderr.strip().splitlines()[-1]


def _check_last_save_failed(proc, work, name: str, stays: str) -> None:
    """Status 74, no "finished", one last line (console and text log) naming ``stays``."""
    assert proc.returncode == LAST_SAVE_FAILED_EXIT_CODE == 74, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "finished at iter" not in proc.stderr
    last = _last_line(proc)
    assert " - ERROR - " in last, last
    assert f"its last checkpoint {name!r} was not saved" in last, last
    assert f"the newest checkpoint that stays is {stays}, which --resume auto continues" in last
    log = (run_dir(work) / f"{run_dir(work).name}.log").read_text().strip().splitlines()
    assert log[-1].split(" - ", 1)[1] == last.split(" - ", 1)[1]


@needs_unshare
def test_a_full_disk_at_the_last_save_exits_74_naming_what_resume_auto_continues_from(tmp_path):
    """The tmpfs holds one checkpoint: epoch_1 is written, epoch_2 and epoch_3 (the last) fail."""
    work = tmp_path / "run"
    checkpoints = work / "checkpoints"
    checkpoints.mkdir(parents=True)
    script = (f"mount -t tmpfs -o size=176k tmpfs {shlex.quote(str(checkpoints))} && "
              f"{shlex.join(_train_cmd(work, 'train_cfg.max_epochs=3', WARN))}; status=$?; "
              f"{shlex.join([sys.executable, '-c', AUTO, str(checkpoints)])}; "
              f"cat {shlex.quote(str(checkpoints / 'latest'))}; exit $status")
    proc = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
                          env=_env(), cwd=REPO, capture_output=True, text=True, timeout=240)
    warned = [line for line in proc.stderr.splitlines() if "was not saved: writing" in line]
    assert ["'epoch_2'" in warned[0], "'epoch_3'" in warned[1], len(warned)] == [True, True, 2]
    auto, latest = proc.stdout.split("AUTO ", 1)[1].split()
    assert (auto, latest) == (str(checkpoints / "epoch_1"), "epoch_1")  # as the kernel allowed
    _check_last_save_failed(proc, work, "epoch_3", auto)


def test_a_failed_save_with_a_later_one_trains_on_and_ends_with_0(tmp_path):
    work = tmp_path / "run"
    proc = _limited(tmp_path, work, "2", 12_000)  # random_states_0.pkl: 14 kB
    assert proc.returncode == 0, proc.stderr[-3000:]
    warned = [line for line in proc.stderr.splitlines() if "was not saved" in line]
    assert len(warned) == 1 and "checkpoint 'epoch_2' was not saved: writing" in warned[0]
    assert "Traceback" not in proc.stderr
    assert "finished at iter 18" in _last_line(proc)
    assert (work / "checkpoints" / "latest").read_text().strip() == "epoch_3"


def test_a_last_save_failing_without_a_full_disk_exits_74(tmp_path):
    work = tmp_path / "run"
    proc = _limited(tmp_path, work, "3", 12_000)
    _check_last_save_failed(proc, work, "epoch_3", str(work / "checkpoints" / "epoch_2"))
    assert (work / "checkpoints" / "latest").read_text().strip() == "epoch_2"


def test_an_async_last_save_failing_in_the_background_exits_74(tmp_path):
    """30 kB: the small files (written before the save returns) fit, the weights do not."""
    work = tmp_path / "run"
    proc = _limited(tmp_path, work, "3", 30_000, "+default_hooks.checkpoint.async=true")
    warned = [line for line in proc.stderr.splitlines() if "was not saved: writing" in line]
    assert len(warned) == 1 and "model.safetensors" in warned[0], proc.stderr[-3000:]
    _check_last_save_failed(proc, work, "epoch_3", str(work / "checkpoints" / "epoch_2"))
