"""SIGTERM mid-run through the real command: every rank saves, exits 75, resumes exactly.

The model is the digits MLP with a pause in each training forward (a user module named
by ``custom_imports``, written into the test's folder), so that a run lasts long enough
to be signalled mid-way; the pause changes no number, so the reference run (no pause)
is the same computation. Each rank writes its pid once training started: the test
signals the launcher (``accelerate launch`` forwards SIGTERM to its workers) or one
worker alone (any rank's signal must stop all of them).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from accelwrap.runner.preemption import PREEMPTED_EXIT_CODE
from tests.distributed.launch import REPO
from tests.distributed.train_cli import CPU_2PROC, TRAIN, records, train, tree

pytestmark = pytest.mark.slow

PACED_MODULE = '''
import os
import time
from pathlib import Path

from accelwrap.registry import MODELS
from accelwrap.runner.models import MLPClassifier


@MODELS.register_module()
class PacedMLP(MLPClassifier):
    """MLPClassifier that writes its pid when training starts and pauses in each forward."""

    def forward(self, inputs, labels):
        if self.training:
            marker = Path(os.environ["PACE_DIR"], f"rank{os.environ.get('RANK', '0')}.pid")
            if not marker.exists():
                marker.write_text(str(os.getpid()))
            time.sleep(float(os.environ.get("PACE_S", "0")))
        return super().forward(inputs, labels)
'''

ARGS = ["--config", "configs/digits_sgd_multistep.yaml", "train_cfg.max_epochs=3",
        "train_dataloader.batch_size=64", "default_hooks.logger.progress_bar=false",
        "default_hooks.logger.trackers=null", "+default_hooks.checkpoint.by_epoch=false",
        "default_hooks.checkpoint.interval=1000", "+optim_wrapper.accumulative_counts=2",
        "param_scheduler.0.end=10", "param_scheduler.1.milestones=[30]",
        "model.type=PacedMLP", "+custom_imports={imports: [paced_model]}"]


def _env(tmp_path: Path, pace: float) -> dict[str, str]:
    (tmp_path / "paced_model.py").write_text(PACED_MODULE)
    pace_dir = tmp_path / f"pids-{time.monotonic_ns()}"
    pace_dir.mkdir()
    return {"PACE_DIR": str(pace_dir), "PACE_S": str(pace),
            "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}


def _start(work: Path, args: list[str], nproc: int, env: dict[str, str]) -> subprocess.Popen:
    """Start scripts/train.py as train_cli.train does, without waiting."""
    full = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **env}
    full.pop("ACCELERATE_USE_CPU", None)
    launch = ([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(CPU_2PROC)] if nproc == 2 else [sys.executable])
    return subprocess.Popen([*launch, str(TRAIN), "--work-dir", str(work), *args], env=full,
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _pids(env: dict[str, str], nproc: int, proc: subprocess.Popen) -> list[int]:
    """Wait until every rank trains; their pids by rank."""
    files = [Path(env["PACE_DIR"], f"rank{rank}.pid") for rank in range(nproc)]
    deadline = time.monotonic() + 120
    while not all(f.is_file() and f.read_text() for f in files):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"training never started:\n{proc.communicate()[0][-4000:]}")
        time.sleep(0.01)
    return [int(f.read_text()) for f in files]


def _final(work: Path) -> tuple[str, dict[str, bytes]]:
    latest = (work / "checkpoints" / "latest").read_text().strip()
    files = tree(work / "checkpoints" / latest)
    files.pop("runner_state.json")
    return latest, files


def _preempt(tmp_path: Path, nproc: int, target: str) -> tuple[Path, str, int]:
    """Run, signal ``target`` ('launcher' or 'rank<N>') once training started; wait.

    Returns:
        The work dir, the job's output and its exit status.
    """
    work = tmp_path / "preempted"
    env = _env(tmp_path, pace=0.03)
    proc = _start(work, ARGS, nproc, env)
    pids = _pids(env, nproc, proc)
    os.kill(proc.pid if target == "launcher" else pids[int(target[4:])], signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    return work, out, proc.returncode


def _check_preempted_and_resume(tmp_path: Path, nproc: int, work: Path, out: str) -> None:
    name = (work / "checkpoints" / "latest").read_text().strip()
    stopped_at = int(name.removeprefix("iter_"))
    assert 0 < stopped_at < 3 * (23 if nproc == 1 else 12), out[-3000:]
    assert stopped_at % 2 == 0, "saved inside an accumulation window"
    assert f"checkpoint {work / 'checkpoints' / name} holds iter {stopped_at}" in out
    reference = tmp_path / "reference"
    train(reference, ARGS, nproc=nproc, env=_env(tmp_path, pace=0.0))
    train(work, [*ARGS, "--resume", "auto"], nproc=nproc, env=_env(tmp_path, pace=0.0))
    assert _final(work) == _final(reference)
    assert records(work) == records(reference)


def test_sigterm_one_process_saves_exits_75_and_resumes_bit_identical(tmp_path):
    work, out, status = _preempt(tmp_path, 1, "rank0")
    assert status == PREEMPTED_EXIT_CODE, out[-3000:]
    assert "received SIGTERM" in out and "preempted by SIGTERM" in out
    _check_preempted_and_resume(tmp_path, 1, work, out)


def test_second_signal_exits_at_once_keeping_the_last_checkpoint(tmp_path):
    env = _env(tmp_path, pace=0.2)  # the first signal's iteration is still running
    work = tmp_path / "w"
    proc = _start(work, ARGS, 1, env)
    pid = _pids(env, 1, proc)[0]
    os.kill(pid, signal.SIGTERM)
    time.sleep(0.05)
    os.kill(pid, signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == -signal.SIGTERM, out[-3000:]
    assert "received SIGTERM" in out and "preempted by" not in out
    assert not (work / "checkpoints" / "latest").exists()


@pytest.mark.distributed
def test_sigterm_to_the_launcher_stops_both_ranks_and_resumes_bit_identical(tmp_path):
    work, out, status = _preempt(tmp_path, 2, "launcher")
    assert status != 0
    assert "preempted by SIGTERM" in out, out[-4000:]
    assert {"random_states_0.pkl", "random_states_1.pkl"} <= set(_final(work)[1])
    _check_preempted_and_resume(tmp_path, 2, work, out)


@pytest.mark.distributed
def test_sigterm_to_one_worker_stops_every_rank(tmp_path):
    work, out, status = _preempt(tmp_path, 2, "rank1")
    assert status != 0
    name = (work / "checkpoints" / "latest").read_text().strip()
    # Rank 0 was not signalled, yet stopped at the same iteration and wrote the checkpoint.
    assert (f"preempted by a signal on another process: checkpoint "
            f"{work / 'checkpoints' / name}") in out, out[-4000:]
    # Both ranks left with the preemption status (the launcher names each worker's).
    assert out.count(f"exitcode  : {PREEMPTED_EXIT_CODE}") == 2, out[-4000:]
