"""Checkpoint writes that fail for real: a full disk, a file-size limit, a read-only folder.

Each failure is produced by the kernel, in a child process that runs ``scripts/train.py``
as a user does: a full disk is a small tmpfs mounted on ``<work_dir>/checkpoints`` inside
a private mount namespace (``unshare``, no root needed where user namespaces are
enabled); a file-size limit is ``RLIMIT_FSIZE`` (writes past it fail with ``EFBIG``;
``SIGXFSZ`` ignored); a read-only folder is ``chmod`` for a normal user and a read-only
bind mount for root (whom ``chmod`` does not stop). The run must stop non-zero with one
line (no traceback) naming the file or folder, the free space and the checkpoint that
stays, leave no ``.tmp-*`` folder, and keep the last good checkpoint loadable; with
``on_error: warn`` it trains on and tries again at the next save.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from accelwrap.runner import Runner
from accelwrap.runner.checkpoint_find import verify_checkpoint
from accelwrap.tools.train import main
from tests.distributed.launch import REPO, accelerate_launch
from tests.runner.helpers import config

TRAIN = REPO / "scripts" / "train.py"
CPU_2PROC = REPO / "launch_configs" / "cpu_2proc.yaml"
ARGS = ["--config", "configs/digits_sgd_multistep.yaml", "train_dataloader.batch_size=256",
        "default_hooks.logger.progress_bar=false", "default_hooks.logger.trackers=null",
        "default_hooks.checkpoint.max_keep_ckpts=1"]


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("ACCELERATE_USE_CPU", None)
    return env


def _train_cmd(work: Path, *extra: str) -> list[str]:
    return [sys.executable, str(TRAIN), "--work-dir", str(work), *ARGS, *extra]


def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            "mount -t tmpfs -o size=64k tmpfs /tmp"], capture_output=True)
    return probe.returncode == 0


needs_unshare = pytest.mark.skipif(not _can_unshare(), reason="no user+mount namespaces here")


def _in_namespace(mount: str, cmd: list[str], keep: Path | None = None
                  ) -> subprocess.CompletedProcess:
    """Run ``cmd`` after ``mount`` in a private mount namespace; ``keep``: copy the
    checkpoints folder there before the namespace (and its mounts) goes away."""
    script = f"{mount} && {shlex.join(cmd)}"
    if keep is not None:
        folder = shlex.quote(str(Path(cmd[cmd.index("--work-dir") + 1]) / "checkpoints"))
        script += f"; status=$?; cp -a {folder} {shlex.quote(str(keep))}; exit $status"
    return subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
                          env=_env(), cwd=REPO, capture_output=True, text=True, timeout=240)


def _full_disk(work: Path, *extra: str, keep: Path | None = None) -> subprocess.CompletedProcess:
    """Train 3 epochs with ``<work>/checkpoints`` on a tmpfs that holds one checkpoint.

    One checkpoint of this config takes about 120 KiB of tmpfs pages: the first fits,
    the second (written before the first is pruned) does not.
    """
    (work / "checkpoints").mkdir(parents=True)
    mount = f"mount -t tmpfs -o size=176k tmpfs {shlex.quote(str(work / 'checkpoints'))}"
    return _in_namespace(mount, [*_train_cmd(work, "train_cfg.max_epochs=3"), *extra], keep)


def _check_one_clear_line(proc: subprocess.CompletedProcess, work: Path, *expected: str,
                          left: Path | None = None) -> str:
    """One ``error:`` line holding ``expected``; no ``.tmp-*`` left in ``left`` (the
    checkpoints folder as the run left it)."""
    left = work / "checkpoints" if left is None else left
    assert proc.returncode != 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, proc.stderr[-3000:]
    for text in (*expected, f"the file system of {work / 'checkpoints'} has "):
        assert text in lines[0], lines[0]
    assert not list(left.glob(".tmp-*")), list(left.iterdir())
    return lines[0]


@pytest.mark.slow
@needs_unshare
def test_a_full_disk_stops_the_run_with_one_line_and_keeps_the_last_checkpoint(tmp_path):
    work, after = tmp_path / "run", tmp_path / "after"
    proc = _full_disk(work, "+default_hooks.checkpoint.on_error=raise", keep=after)
    line = _check_one_clear_line(proc, work, "checkpoint 'epoch_2' was not saved",
                                 "free (full)",
                                 f"the last good checkpoint {work / 'checkpoints' / 'epoch_1'}",
                                 left=after)
    assert "optimizer.bin" in line or "model.safetensors" in line, line
    assert sorted(p.name for p in after.iterdir()) == ["epoch_1", "latest"]
    assert (after / "latest").read_text().strip() == "epoch_1"
    verify_checkpoint(after / "epoch_1")  # every file still matches its manifest


@pytest.mark.slow
@needs_unshare
def test_on_error_warn_trains_on_and_tries_again_at_each_save(tmp_path):
    proc = _full_disk(tmp_path / "run", "+default_hooks.checkpoint.on_error=warn")
    # The last save (epoch_3) fails too: status 74 (tests/runner/test_last_save_failure.py)
    assert proc.returncode == 74, proc.stderr[-3000:]
    warned = [line for line in proc.stderr.splitlines() if "was not saved: writing" in line]
    assert [("'epoch_2'" in w, "'epoch_3'" in w) for w in warned] == [(True, False),
                                                                     (False, True)]
    assert all("training continues" in w and "free (full)" in w for w in warned)
    assert "training reached iter 18, but its last checkpoint 'epoch_3'" in proc.stderr


def _limit_file_size(limit: int) -> None:
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.slow
def test_a_file_size_limit_fails_the_first_save_cleanly(tmp_path):
    work = tmp_path / "run"
    proc = subprocess.run(_train_cmd(work, "train_cfg.max_epochs=1"), env=_env(), cwd=REPO,
                          capture_output=True, text=True, timeout=240,
                          preexec_fn=lambda: _limit_file_size(20_000))
    _check_one_clear_line(proc, work, "checkpoint 'epoch_1' was not saved", "File too large",
                          "there is no earlier checkpoint")
    assert [p.name for p in (work / "checkpoints").iterdir()] == []


@pytest.mark.slow
def test_a_read_only_checkpoint_folder_names_it(tmp_path, monkeypatch):
    work = tmp_path / "run"
    monkeypatch.chdir(REPO)  # the first epoch in this process: only its checkpoint is needed
    assert main(_train_cmd(work, "train_cfg.max_epochs=1")[2:]) == 0
    checkpoints = work / "checkpoints"
    resume = [*_train_cmd(work, "train_cfg.max_epochs=2"), "--resume", "auto"]
    if os.geteuid() != 0:
        checkpoints.chmod(0o555)
        try:
            proc = subprocess.run(resume, env=_env(), cwd=REPO, capture_output=True, text=True,
                                  timeout=240)
        finally:
            checkpoints.chmod(0o755)
        reason = "EACCES"
    elif _can_unshare():
        where = shlex.quote(str(checkpoints))
        proc = _in_namespace(f"mount --bind {where} {where} && "
                             f"mount -o remount,bind,ro {where}", resume)
        reason = "EROFS"
    else:
        pytest.skip("root without mount namespaces: nothing here makes a folder read-only")
    _check_one_clear_line(proc, work, "checkpoint 'epoch_2' was not saved", reason,
                          f"the last good checkpoint {checkpoints / 'epoch_1'}")


WORKER = """\
import os, resource, runpy, signal, sys
if os.environ.get("RANK") == "1":  # only this rank's writes fail
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
sys.argv = [sys.argv[1], *sys.argv[2:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.slow
@pytest.mark.distributed
def test_two_processes_agree_when_one_rank_cannot_write(tmp_path):
    """Rank 1's RNG file fails; rank 0 must not wait for it in a barrier: both stop."""
    work = tmp_path / "run"
    worker = tmp_path / "limited_rank1.py"
    worker.write_text(WORKER)
    proc = accelerate_launch(tmp_path / "results", worker, CPU_2PROC,
                             [str(TRAIN), "--work-dir", str(work), *ARGS,
                              "train_cfg.max_epochs=1"], timeout=120, check=False)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert lines and all("rank 1: writing .tmp-epoch_1/" in line for line in lines), \
        proc.stderr[-3000:]
    assert "(last file written: random_states_1.pkl)" in lines[0]
    assert "could not write the whole file" in lines[0]
    # The only traceback is the launcher's report that its workers failed.
    assert proc.stderr.count("Traceback") == proc.stderr.count("ChildFailedError:") == 1
    assert not (work / "checkpoints" / ".tmp-epoch_1").exists()


def test_leftovers_of_killed_saves_are_removed_at_the_next_start(tmp_path):
    cfg = config("digits_sgd_multistep", tmp_path, "train_cfg.max_epochs=1",
                 "train_dataloader.batch_size=256")
    Runner.from_cfg(cfg).train()
    checkpoints = tmp_path / "checkpoints"
    for leftover in (".tmp-epoch_2", ".old-epoch_0"):
        (checkpoints / leftover).mkdir()
        (checkpoints / leftover / "model.safetensors").write_bytes(b"partial")
    (checkpoints / ".tmp-latest").write_text("epoch_2\n")
    resumed = OmegaConf.merge(config("digits_sgd_multistep", tmp_path, "train_cfg.max_epochs=2",
                                     "train_dataloader.batch_size=256"), {"resume": "auto"})
    Runner.from_cfg(resumed).train()
    assert sorted(p.name for p in checkpoints.iterdir()) == ["epoch_1", "epoch_2", "latest"]
