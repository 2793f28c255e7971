"""``default_hooks.checkpoint.on_error: warn`` with 2 processes: one rank cannot write.

Two real processes (``accelerate launch``, gloo) run ``scripts/train.py`` as users do.
The write failure is the kernel's: during the second checkpoint only, one rank's
``RLIMIT_FSIZE`` soft limit is 4 KiB (writes past it fail with ``EFBIG``; ``SIGXFSZ``
ignored), lifted again once that save returns, as when space is freed. Rank 1 alone
fails on its ``random_states_1.pkl``; rank 0 alone fails on the model's file; or both
fail. Every way, both ranks must agree (no rank waits in a collective the other never
reaches: the launch has a timeout), the main process warns once with the failing rank's
file, training goes on to the end, the failed checkpoint leaves no folder and no
``.tmp-*``, the next interval saves, and the last checkpoint resumes: every file of the next
checkpoint equals that of the same commands where nothing failed.
"""

from __future__ import annotations

import pytest

from accelwrap.runner.checkpoint_find import verify_checkpoint
from tests.distributed.launch import accelerate_launch, once_per_session
from tests.distributed.train_cli import CPU_2PROC, TRAIN, tree

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

# 1,438 digits / 256 per process / 2 processes: 3 iterations per epoch; one save an epoch.
ARGS = ["--config", "configs/digits_sgd_multistep.yaml", "train_dataloader.batch_size=256",
        "default_hooks.logger.progress_bar=false", "default_hooks.logger.trackers=null",
        "default_hooks.checkpoint.max_keep_ckpts=5", "+default_hooks.checkpoint.on_error=warn"]

# Runs scripts/train.py in each worker; on the ranks in $FAIL_RANKS, save number $FAIL_SAVE runs
# under a 4 KiB file-size limit (the hard limit stays, so the process can lift it after).
WORKER = """\
import os, resource, runpy, signal, sys
from accelwrap.runner.checkpoint import CheckpointManager
rank, fail_ranks = os.environ["RANK"], os.environ["FAIL_RANKS"].split(",")
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death
save, calls = CheckpointManager.save, []
def limited_save(self, *args, **kwargs):
    calls.append(1)
    if rank not in fail_ranks or len(calls) != int(os.environ["FAIL_SAVE"]):
        return save(self, *args, **kwargs)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
        return save(self, *args, **kwargs)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
CheckpointManager.save = limited_save
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _launch(tmp_path, name: str, epochs: int, *extra: str, fail_ranks: tuple[int, ...] = (),
            worker=None):
    work = tmp_path / name
    script = worker or TRAIN
    args = ([str(TRAIN)] if worker else []) + ["--work-dir", str(work), *ARGS,
                                               f"train_cfg.max_epochs={epochs}", *extra]
    env = {"FAIL_RANKS": ",".join(map(str, fail_ranks)), "FAIL_SAVE": "2"}
    proc = accelerate_launch(tmp_path / f"results-{name}", script, CPU_2PROC, args, env=env,
                             timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return work, proc


def _weights(work, name: str) -> dict[str, bytes]:
    files = tree(work / "checkpoints" / name)
    files.pop("runner_state.json")
    return files


def _reference_runs(root) -> None:
    _launch(root, "run", 3)
    _launch(root, "run", 4, "--resume", "auto")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same two commands (3 epochs, then ``--resume auto`` to 4) where nothing fails,
    once per session: the files of epoch_3 and epoch_4 every variant must reach."""
    work = once_per_session(tmp_path_factory, "save_failure_reference", _reference_runs) / "run"
    return {name: _weights(work, name) for name in ("epoch_3", "epoch_4")}


RANK1 = "rank 1: writing .tmp-epoch_2/ (last file written: random_states_1.pkl) failed"
# safetensors removes its partial file and names none: the line still says which.
RANK0 = "rank 0: writing .tmp-epoch_2/model.safetensors failed (SafetensorError"


@pytest.mark.parametrize(("fail_ranks", "named"), [
    ((1,), [RANK1]),
    ((0,), [RANK0]),
    ((0, 1), [RANK0, RANK1]),  # a full disk both see: both named, in one line
], ids=["rank 1", "rank 0", "both"])
def test_one_rank_cannot_write_both_warn_train_on_and_the_next_save_works(
        tmp_path, reference, fail_ranks, named):
    worker = tmp_path / "limit_one_save.py"
    worker.write_text(WORKER)
    work, proc = _launch(tmp_path, "run", 3, fail_ranks=fail_ranks, worker=worker)

    warned = [line for line in proc.stderr.splitlines() if "was not saved" in line]
    assert len(warned) == 1, proc.stderr[-4000:]  # the main process says it, once
    line = warned[0]
    assert "checkpoint 'epoch_2' was not saved" in line
    for rank in (0, 1):  # each rank that failed is named with its file; no other
        assert (rank in fail_ranks) == (f"rank {rank}: writing" in line), line
    assert all(text in line for text in named), line
    assert f"the last good checkpoint {work / 'checkpoints' / 'epoch_1'} stays" in line
    assert "training continues" in line
    assert "Traceback" not in proc.stderr
    assert "finished at iter 9" in proc.stderr, proc.stderr[-3000:]

    checkpoints = work / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["epoch_1", "epoch_3", "latest"]
    assert (checkpoints / "latest").read_text().strip() == "epoch_3"
    for name in ("epoch_1", "epoch_3"):
        verify_checkpoint(checkpoints / name)
    assert _weights(work, "epoch_3") == reference["epoch_3"]  # the failure changed nothing

    resumed_work, resumed = _launch(tmp_path, "run", 4, "--resume", "auto")
    assert resumed_work == work
    assert "epoch_3" in resumed.stderr and "finished at iter 12" in resumed.stderr
    assert _weights(work, "epoch_4") == reference["epoch_4"]
