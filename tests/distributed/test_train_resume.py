"""SIGKILL at various points + ``--resume auto`` ends bit-identical to an uninterrupted run.

The runner's test hook ``ACCELWRAP_TEST_KILL=iter:K`` kills the process after
iteration K; ``save:K`` kills it inside the checkpoint write of iteration K (weights on
disk, not yet renamed). Checkpoints every 3 iterations with ``accumulative_counts=2``
(saves wait for the window to close) and dropout in the model (RNG must be restored).
"""

from __future__ import annotations

import json

import pytest

from tests.distributed.train_cli import records, train, tree

ARGS = ["--config", "configs/digits_sgd_multistep.yaml", "train_cfg.max_epochs=2",
        "train_dataloader.batch_size=64", "default_hooks.logger.progress_bar=false",
        "default_hooks.logger.trackers=null", "+default_hooks.checkpoint.by_epoch=false",
        "default_hooks.checkpoint.interval=3", "default_hooks.checkpoint.max_keep_ckpts=3",
        "+optim_wrapper.accumulative_counts=2", "param_scheduler.0.end=10",
        "param_scheduler.1.milestones=[1]"]


def _final(work_dir):
    latest = (work_dir / "checkpoints" / "latest").read_text().strip()
    files = tree(work_dir / "checkpoints" / latest)
    files.pop("runner_state.json")
    return latest, files


def _killed_chain(tmp_path, nproc, kills):
    work = tmp_path / "interrupted"
    for kill in kills:
        resume = ["--resume", "auto"] if (work / "checkpoints").exists() else []
        proc = train(work, ARGS + resume, nproc=nproc, env={"ACCELWRAP_TEST_KILL": kill},
                     check=False)
        assert proc.returncode != 0, f"the run was not killed at {kill}"
        if kill.startswith("save:"):
            step = kill.split(":")[1]
            assert (work / "checkpoints" / f".tmp-iter_{step}").is_dir()
            assert (work / "checkpoints" / "latest").read_text().strip() != f"iter_{step}"
    train(work, ARGS + ["--resume", "auto"], nproc=nproc)
    return work


@pytest.mark.slow
def test_kill_and_resume_is_bit_identical_one_process(tmp_path):
    reference = tmp_path / "reference"
    train(reference, ARGS)
    # 23 iterations per epoch: 7 is inside an accumulation window, 12 on a boundary
    # (checkpoint just written), save:18 inside a checkpoint write, 23 ends epoch 0
    # in the middle of a window.
    work = _killed_chain(tmp_path, 1, ["iter:7", "iter:12", "save:18", "iter:23"])
    assert _final(work) == _final(reference)
    assert records(work) == records(reference)


@pytest.mark.slow
@pytest.mark.distributed
def test_kill_and_resume_is_bit_identical_two_processes(tmp_path):
    reference = tmp_path / "reference"
    train(reference, ARGS, nproc=2)
    name, files = _final(reference)
    # accelerate launch --config_file launch_configs/cpu_2proc.yaml really gave 2 ranks.
    assert {"random_states_0.pkl", "random_states_1.pkl"} <= set(files)
    state = json.loads((reference / "checkpoints" / name / "runner_state.json").read_text())
    assert state["world_size"] == 2 and state["epoch_length"] == 12
    # 12 iterations per epoch per rank: 5 is inside a window; the save due at 9 waits
    # for the window to close at 10, and save:10 kills inside that write.
    work = _killed_chain(tmp_path, 2, ["iter:5", "save:10"])
    assert _final(work) == (name, files)
    assert records(work) == records(reference)


@pytest.mark.slow
@pytest.mark.distributed
def test_ema_and_best_checkpoint_resume_bit_identical_two_processes(tmp_path):
    """The EMA file and the best checkpoint continue across kills as if never stopped."""
    args = ARGS + ["+custom_hooks=[{type: EMAHook, momentum: 0.01}]",
                   "+default_hooks.checkpoint.save_best=accuracy"]
    reference = tmp_path / "reference"
    train(reference, args, nproc=2)
    name, files = _final(reference)
    assert "ema.safetensors" in files
    work = tmp_path / "interrupted"
    for kill in ["iter:5", "save:10"]:
        resume = ["--resume", "auto"] if (work / "checkpoints").exists() else []
        proc = train(work, args + resume, nproc=2, env={"ACCELWRAP_TEST_KILL": kill},
                     check=False)
        assert proc.returncode != 0, f"the run was not killed at {kill}"
    train(work, args + ["--resume", "auto"], nproc=2)
    assert _final(work) == (name, files)
    assert records(work) == records(reference)
    best = [sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("best_"))
            for run in (reference, work)]
    assert len(best[0]) == 1 and best[0] == best[1]
