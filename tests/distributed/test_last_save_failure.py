"""``on_error: warn`` with 2 processes: a failed last save ends every rank with status 74.

Two real processes (``accelerate launch``, gloo) run ``scripts/train.py`` with
``<work_dir>/checkpoints`` on a tmpfs that holds one checkpoint (a private mount namespace,
see ``tests/runner/test_save_failure.py``): epoch_1 is written, epoch_2 and the last one,
epoch_3, fail. Both ranks must decide alike (the main process's ``latest``, broadcast),
leave with 74 (the launcher names each worker's status, then exits 1 itself), and the
text log must end with the line naming the checkpoint that stays.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest

from accelwrap.runner.save_failure import LAST_SAVE_FAILED_EXIT_CODE
from tests.distributed.launch import REPO
from tests.distributed.train_cli import CPU_2PROC, TRAIN
from tests.runner.helpers import run_dir
from tests.runner.test_save_failure import ARGS, _env, needs_unshare

pytestmark = [pytest.mark.slow, pytest.mark.distributed]


@needs_unshare
def test_both_ranks_exit_74_when_the_last_save_fails(tmp_path):
    work = tmp_path / "run"
    checkpoints = work / "checkpoints"
    checkpoints.mkdir(parents=True)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
              str(CPU_2PROC), str(TRAIN), "--work-dir", str(work), *ARGS,
              "train_cfg.max_epochs=3", "+default_hooks.checkpoint.on_error=warn"]
    script = (f"mount -t tmpfs -o size=176k tmpfs {shlex.quote(str(checkpoints))} && "
              f"{shlex.join(launch)}")
    proc = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
                          env={**_env(), "ACCELERATE_USE_CPU": "1"}, cwd=REPO,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 1, proc.stderr[-4000:]  # the launcher's own status
    # Each worker leaves with 74; the launcher may stop the slower one first (SIGTERM)
    # once it sees the first: its report names at least one 74 and no other status.
    codes = re.findall(r"exitcode  : (-?\d+)", proc.stderr)
    assert str(LAST_SAVE_FAILED_EXIT_CODE) in codes, proc.stderr[-4000:]
    assert set(codes) <= {str(LAST_SAVE_FAILED_EXIT_CODE), "-15"}, codes
    assert "finished at iter" not in proc.stderr
    stays = (f"its last checkpoint 'epoch_3' was not saved (see the warning above); the newest "
             f"checkpoint that stays is {checkpoints / 'epoch_1'}, which --resume auto")
    log = (run_dir(work) / f"{run_dir(work).name}.log").read_text().splitlines()
    assert " - ERROR - " in log[-1] and stays in log[-1], log[-3:]
    assert sum(stays in line for line in log) == 1  # rank 0 alone writes the text log
