"""One run per work dir: the lock, stale locks, no silent overwrite, ``--overwrite``."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from accelwrap.config import load_config
from accelwrap.runner import Runner
from accelwrap.runner.preemption import PREEMPTED_EXIT_CODE
from accelwrap.runner.workdir import LOCK_FILE, WorkDirError, WorkDirLock, lock_holder
from accelwrap.tools.train import main
from tests.distributed.test_preemption import ARGS as PACED_ARGS
from tests.distributed.test_preemption import _env, _pids, _start
from tests.distributed.train_cli import tree
from tests.runner.helpers import QUIET, REPO, config, run, run_dir

SHORT = ["train_cfg.max_epochs=2", "train_dataloader.batch_size=256"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_lock(work_dir, **fields):
    work_dir.mkdir(parents=True, exist_ok=True)
    holder = {"host": socket.gethostname(), "pid": os.getpid(), "started": "earlier",
              "command": "train.py", **fields}
    (work_dir / LOCK_FILE).write_text(json.dumps(holder))
    return holder


@pytest.mark.slow
def test_a_second_run_is_refused_while_a_real_run_holds_the_work_dir(tmp_path):
    work = tmp_path / "work"
    env = _env(tmp_path, pace=0.3)  # 69 iterations: it runs until the test stops it
    first = _start(work, PACED_ARGS, 1, env)
    try:
        pid = _pids(env, 1, first)[0]
        assert lock_holder(work / LOCK_FILE)["pid"] == pid
        before = tree(work)
        runner = Runner.from_cfg(config("digits_sgd_multistep", work, *SHORT, "+resume=auto"))
        with pytest.raises(WorkDirError, match=rf"in use by another run: pid {pid} on host "
                                               rf"'{socket.gethostname()}'"):
            runner.train()
        # The refused run wrote nothing (the first run's files may have grown meanwhile).
        assert set(tree(work)) - set(before) <= {p for p in tree(work) if "iter_" in p}
    finally:
        os.kill(first.pid, signal.SIGTERM)
        first.communicate(timeout=120)
    assert first.returncode == PREEMPTED_EXIT_CODE
    assert not (work / LOCK_FILE).exists()  # released by the preempted run


def test_a_stale_lock_of_a_dead_process_is_taken_over_and_released(tmp_path, caplog):
    dead = _dead_pid()
    _write_lock(tmp_path, pid=dead)
    run("digits_sgd_multistep", tmp_path, *SHORT)
    assert f"taking over the stale lock of a run that is gone (pid {dead}" in caplog.text
    assert not (tmp_path / LOCK_FILE).exists()
    assert (tmp_path / "checkpoints" / "latest").is_file()


def test_a_reused_pid_is_stale_but_a_live_one_is_not(tmp_path):
    # This very process, but recorded with another start time: the pid was reused.
    _write_lock(tmp_path, pid_start_ticks=1)
    lock = WorkDirLock(tmp_path)
    lock.acquire()
    assert lock_holder(tmp_path / LOCK_FILE)["pid_start_ticks"] != 1
    with pytest.raises(WorkDirError, match=f"pid {os.getpid()} on host"):
        WorkDirLock(tmp_path).acquire()
    lock.release()
    assert not (tmp_path / LOCK_FILE).exists()


def test_a_work_dir_made_for_the_lock_alone_goes_with_it(tmp_path):
    lock = WorkDirLock(tmp_path / "new" / "work")
    lock.acquire()
    lock.release()
    assert not (tmp_path / "new" / "work").exists()
    kept = WorkDirLock(tmp_path / "used")
    kept.acquire()
    (tmp_path / "used" / "config.yaml").write_text("{}")
    kept.release()
    assert sorted(p.name for p in (tmp_path / "used").iterdir()) == ["config.yaml"]


def test_an_unreadable_lock_is_stale_only_once_it_is_old(tmp_path):
    (tmp_path / LOCK_FILE).write_text("")  # created, not yet written (or the writer died)
    with pytest.raises(WorkDirError, match="an unreadable lock"):
        WorkDirLock(tmp_path).acquire()
    old = time.time() - 60
    os.utime(tmp_path / LOCK_FILE, (old, old))
    lock = WorkDirLock(tmp_path)
    lock.acquire()
    assert lock_holder(tmp_path / LOCK_FILE)["pid"] == os.getpid()
    lock.release()


def test_a_lock_of_another_host_is_refused_naming_the_file_to_delete(tmp_path):
    _write_lock(tmp_path, host="node-elsewhere", pid=1234)
    with pytest.raises(WorkDirError) as err:
        WorkDirLock(tmp_path).acquire()
    assert "pid 1234 on host 'node-elsewhere'" in str(err.value)
    assert f"delete {str(tmp_path / LOCK_FILE)!r}" in str(err.value)
    assert lock_holder(tmp_path / LOCK_FILE)["host"] == "node-elsewhere"  # left alone


def _cli(work, *extra):
    return main([str(REPO / "configs" / "digits_sgd_multistep.yaml"), "--work-dir", str(work),
                 *QUIET, *SHORT, *extra])


def test_a_fresh_run_into_a_finished_work_dir_is_refused_and_writes_nothing(tmp_path, capsys):
    assert _cli(tmp_path) == 0
    before = tree(tmp_path)
    capsys.readouterr()
    assert _cli(tmp_path) == 1
    err = capsys.readouterr().err
    assert "already holds checkpoints (latest: epoch_2)" in err
    assert "--resume auto" in err and "--work-dir" in err and "--overwrite" in err
    assert tree(tmp_path) == before
    assert not (tmp_path / LOCK_FILE).exists()


def test_overwrite_deletes_the_old_checkpoints_and_starts_over(tmp_path, caplog):
    assert _cli(tmp_path, "train_cfg.max_epochs=3") == 0
    first = run_dir(tmp_path)
    assert {"epoch_2", "epoch_3"} <= {p.name for p in (tmp_path / "checkpoints").iterdir()}
    assert _cli(tmp_path, "--overwrite") == 0
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "epoch_1", "epoch_2", "latest"]
    state = json.loads((tmp_path / "checkpoints" / "epoch_2" / "runner_state.json").read_text())
    assert state["max_iters"] == 12  # written by the second run (2 epochs of 6)
    assert "overwrite: deleted the checkpoints" in caplog.text
    assert first.is_dir() and run_dir(tmp_path) != first  # old logs stay
    assert "overwrite" not in load_config(tmp_path / "config.yaml")  # this start's action only
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".old-")]


def test_overwrite_with_resume_is_refused(tmp_path, capsys):
    assert _cli(tmp_path, "--overwrite", "--resume", "auto") == 1
    assert "overwrite: true deletes the work dir's checkpoints, but resume is 'auto'" in (
        capsys.readouterr().err)
    assert not tmp_path.joinpath("checkpoints").exists()
    with pytest.raises(ValueError, match="overwrite: expected true or false, got 'maybe'"):
        Runner.from_cfg(config("digits_sgd_multistep", tmp_path, *SHORT, "+overwrite=maybe"))


def test_resume_auto_with_nothing_to_resume_warns_on_console_and_in_the_text_log(tmp_path,
                                                                                 caplog):
    assert _cli(tmp_path, "--resume", "auto") == 0
    message = "resume auto: nothing to resume, no complete checkpoint in"
    folder = run_dir(tmp_path)
    assert f"WARNING - {message}" in (folder / f"{folder.name}.log").read_text()
    # A warning: the console shows it on every process (others log warnings only).
    assert [r.levelname for r in caplog.records if message in r.getMessage()] == ["WARNING"]


def test_nothing_is_written_when_the_config_or_the_model_is_refused(tmp_path):
    work = tmp_path / "work"
    for bad in ("optim_wrapper.optimizer.lr=-1", "model.in_features=5", "model.type=NoSuchNet"):
        assert _cli(work, bad) == 1
        assert not work.exists()
