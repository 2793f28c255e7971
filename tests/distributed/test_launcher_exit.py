"""A one-process ``accelerate launch`` that exits (SIGTERM) must not leave its run training on.

``accelerate launch --config_file launch_configs/cpu.yaml scripts/train.py ...`` starts the
training process and waits for it; SIGTERM makes the launcher exit at once (143) without
forwarding anything. On Linux the training process asks the kernel for SIGTERM when its
launcher is gone (``PR_SET_PDEATHSIG``), so it stops as a preempted run: it writes a
checkpoint, releases the work dir's lock and exits 75.

The orphan is reparented to a helper process that is a child subreaper
(``PR_SET_CHILD_SUBREAPER``), so its real exit status can be read with ``waitpid``; the
helper is a real process of its own so that the test session itself never adopts orphans.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from accelwrap.runner.preemption import PREEMPTED_EXIT_CODE, launched_by
from accelwrap.runner.workdir import LOCK_FILE
from tests.distributed.launch import REPO
from tests.distributed.test_preemption import ARGS, _env
from tests.distributed.train_cli import TRAIN

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="PR_SET_PDEATHSIG is Linux's")

CPU_1PROC = REPO / "launch_configs" / "cpu.yaml"

# argv: the launch command as JSON, the pid file the training process writes once it
# trains. Prints {"launcher": status, "trainer": status} (negative: killed by that signal).
HELPER = """\
import ctypes, json, os, signal, subprocess, sys, time
from pathlib import Path
PR_SET_CHILD_SUBREAPER = 36
assert ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
cmd, pid_file = json.loads(sys.argv[1]), Path(sys.argv[2])
launcher = subprocess.Popen(cmd)
deadline = time.monotonic() + 120
while not (pid_file.is_file() and pid_file.read_text()):
    if launcher.poll() is not None or time.monotonic() > deadline:
        sys.exit(f"training never started (launcher status {launcher.poll()})")
    time.sleep(0.01)
trainer = int(pid_file.read_text())
launcher.send_signal(signal.SIGTERM)
launcher_status = launcher.wait(timeout=60)
_, status = os.waitpid(trainer, 0)  # reparented to this process: a subreaper
code = os.waitstatus_to_exitcode(status)
print(json.dumps({"launcher": launcher_status, "trainer": code}))
"""


def test_sigterm_to_a_one_process_launcher_stops_its_training_process_as_a_preemption(
        tmp_path):
    work = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           **_env(tmp_path, pace=0.03)}
    env.pop("ACCELERATE_USE_CPU", None)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
              str(CPU_1PROC), str(TRAIN), "--work-dir", str(work), *ARGS]
    helper = tmp_path / "subreaper.py"
    helper.write_text(HELPER)
    proc = subprocess.run([sys.executable, str(helper), json.dumps(launch),
                           str(Path(env["PACE_DIR"]) / "rank0.pid")],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    statuses = json.loads(proc.stdout.strip().splitlines()[-1])
    # The launcher dies of the signal (the shell's 143), forwarding nothing ...
    assert statuses["launcher"] in (-15, 143), statuses
    # ... and its training process, told by the kernel, saves and exits as preempted.
    assert statuses["trainer"] == PREEMPTED_EXIT_CODE, (statuses, proc.stderr[-4000:])
    name = (work / "checkpoints" / "latest").read_text().strip()
    assert name.startswith("iter_") and 0 < int(name[5:]) < 3 * 23, name
    assert f"preempted by SIGTERM: checkpoint {work / 'checkpoints' / name}" in proc.stderr
    assert not (work / LOCK_FILE).exists()


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items()
            if k not in ("TORCHELASTIC_RUN_ID", "ACCELERATE_DYNAMO_BACKEND")}
    full["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env={**full, **env},
                          capture_output=True, text=True, timeout=120)


ASK = """\
    import ctypes, os, signal
    from accelwrap.runner.preemption import die_with_launcher
    asked = die_with_launcher({parent})
    got = ctypes.c_int(0)
    ctypes.CDLL(None).prctl(2, ctypes.byref(got), 0, 0, 0)  # PR_GET_PDEATHSIG
    print(asked, got.value == signal.SIGTERM)
"""


@pytest.mark.parametrize(("variable", "launcher"), [("TORCHELASTIC_RUN_ID", "torchrun"),
                                                    ("ACCELERATE_DYNAMO_BACKEND",
                                                     "accelerate launch")])
def test_only_a_process_a_launcher_started_asks_for_the_signal(variable, launcher):
    assert launched_by({variable: "x"}) == launcher
    started = _python(ASK.format(parent=""), **{variable: "x"})
    assert started.stdout.split() == ["True", "True"], started.stderr[-3000:]
    alone = _python(ASK.format(parent=""))  # a plain `python scripts/train.py`
    assert alone.stdout.split() == ["False", "False"], alone.stderr[-3000:]


def test_a_launcher_gone_before_the_kernel_was_asked_stops_the_process_at_once():
    # The pid read at the start is not the parent any more: the launcher died meanwhile.
    gone = _python(ASK.format(parent="os.getppid() + 1"), ACCELERATE_DYNAMO_BACKEND="no")
    assert gone.returncode == -15 and gone.stdout == "", (gone.returncode, gone.stderr)
