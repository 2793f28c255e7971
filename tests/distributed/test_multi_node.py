"""Two "machines" on this one: ``launch_configs/multi_node.yaml`` as users run it.

Two ``accelerate launch`` commands, ``--machine_rank 0`` and ``1`` of ``--num_machines 2``,
rendezvous on 127.0.0.1 with one CPU process each (one gloo group of 2). They train into a
shared work dir (what the README asks for), are killed as a whole job at one iteration,
and ``--resume auto`` on both ends bit-identical to an uninterrupted job. Only global rank
0 (on machine 0) writes the text log, the metrics and the checkpoints' renames. A
node-local work dir per machine is refused at the start, before training.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.distributed.launch import REPO, _env
from tests.distributed.train_cli import TRAIN, records, tree

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

MULTI_NODE = REPO / "launch_configs" / "multi_node.yaml"
ARGS = ["--config", "configs/digits_sgd_multistep.yaml", "train_cfg.max_epochs=2",
        "train_dataloader.batch_size=64", "default_hooks.logger.progress_bar=false",
        "default_hooks.logger.trackers=null", "+default_hooks.checkpoint.by_epoch=false",
        "default_hooks.checkpoint.interval=3", "param_scheduler.0.end=10",
        "param_scheduler.1.milestones=[1]"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def job(work: Path | list[Path], args: list[str] = (), env: dict | None = None) -> list:
    """Both machines' ``accelerate launch`` commands, run together (``work``: the shared work
    dir, or one per machine); ``(exit status, output)`` of each."""
    port = str(_free_port())
    works = work if isinstance(work, list) else [work, work]
    procs = []
    for rank in (0, 1):
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(MULTI_NODE), "--machine_rank", str(rank), "--num_machines", "2",
               "--num_processes", "2", "--main_process_ip", "127.0.0.1", "--main_process_port",
               port, str(TRAIN), "--work-dir", str(works[rank]), *ARGS, *args]
        procs.append(subprocess.Popen(cmd, env=_env(works[0].parent / "results", env),
                                      cwd=REPO, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outputs = [proc.communicate(timeout=300)[0] for proc in procs]
    return [(proc.returncode, out) for proc, out in zip(procs, outputs)]


def _errors(outputs: list) -> str:
    """The error lines of both machines (a launcher's traceback hides them in the tail)."""
    return "\n".join(line for _, out in outputs for line in out.splitlines()
                     if "error" in line.lower() and "ChildFailedError" not in line)


def final(work: Path) -> tuple[str, dict[str, bytes]]:
    latest = (work / "checkpoints" / "latest").read_text().strip()
    files = tree(work / "checkpoints" / latest)
    files.pop("runner_state.json")
    return latest, files


def test_two_machines_train_checkpoint_and_resume_exactly_after_a_kill(tmp_path):
    reference = tmp_path / "reference"
    (code0, out0), (code1, out1) = job(reference)
    assert (code0, code1) == (0, 0), out0[-3000:] + out1[-3000:]
    name, files = final(reference)
    assert name == "iter_24"  # 1,438 digits / 64 per process / 2 processes: 12 per epoch
    assert {"random_states_0.pkl", "random_states_1.pkl"} <= set(files)
    # Logs: global rank 0 only (machine 1 prints no training lines, one text log).
    assert "Epoch(train)" in out0 and "Epoch(train)" not in out1
    logs = list(reference.glob("*/*.log"))
    assert len(logs) == 1 and logs[0].read_text().count("run started") == 1

    work = tmp_path / "work"
    killed = job(work, env={"ACCELWRAP_TEST_KILL": "iter:7"})  # every process, same point
    assert all(code != 0 for code, _ in killed)
    assert (work / "checkpoints" / "latest").read_text().strip() == "iter_6"
    resumed = job(work, ["--resume", "auto"])
    assert [code for code, _ in resumed] == [0, 0], _errors(resumed)
    assert final(work) == (name, files)
    assert records(work) == records(reference)


def test_node_local_work_dirs_are_refused_at_the_start_naming_both_hosts(tmp_path):
    """Each machine with its own work dir: machine 1 does not see machine 0's lock, so both
    stop before training, naming the host and work dir of each; nothing is left behind."""
    node0, node1 = tmp_path / "node0", tmp_path / "node1"
    (code0, out0), (code1, out1) = job([node0, node1], env={"ACCELWRAP_SHARED_WAIT_S": "2"})
    assert code0 != 0 and code1 != 0
    host = socket.gethostname()
    for out in (out0, out1):
        lines = [line for line in out.splitlines() if line.startswith("error: ")]
        assert len(lines) == 1, out[-3000:]
        assert "the work dir is not one folder shared by every machine" in lines[0]
        assert (f"the main process (rank 0 on host {host!r}) holds its lock "
                f"{str(node0 / 'accelwrap.lock')!r}, which rank 1 on host {host!r} (work dir "
                f"{str(node1)!r}) cannot see after 2 s") in lines[0]
        assert "same --work-dir on a file system they all mount" in lines[0]
        assert "Epoch(train)" not in out
        # The only traceback is the launcher's report that its worker failed.
        assert out.count("Traceback") == out.count("ChildFailedError:") == 1
    # Nothing trained or written: the lock is released, no checkpoint or run folder anywhere.
    assert not node0.exists() or list(node0.iterdir()) == []
    assert not node1.exists() or list(node1.iterdir()) == []
