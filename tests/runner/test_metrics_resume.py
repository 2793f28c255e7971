"""After kills and resumes, ``scalars.jsonl`` holds every record exactly once, with every key.

Real processes killed with SIGKILL by the runner's test hook (``ACCELWRAP_TEST_KILL``),
then ``--resume auto``; the records are compared with an uninterrupted run's.
"""

from __future__ import annotations

import json

import pytest
from accelerate import Accelerator

from accelwrap.runner.log_output import MetricLogger
from accelwrap.runner.run_log import latest_run_dir
from tests.distributed.train_cli import records, train

QUIET = ["default_hooks.logger.progress_bar=false", "default_hooks.logger.trackers=null"]


def _chain(tmp_path, args, kills):
    """The reference run, and a run killed at each of ``kills`` then resumed to the end."""
    reference, work = tmp_path / "reference", tmp_path / "interrupted"
    train(reference, args)
    for kill in kills:
        proc = train(work, [*args, "--resume", "auto"], env={"ACCELWRAP_TEST_KILL": kill},
                     check=False)
        assert proc.returncode != 0, f"the run was not killed at {kill}"
    train(work, [*args, "--resume", "auto"])
    return reference, work


def _all_records(work_dir):
    """Every record of every run folder of ``work_dir``."""
    rows = []
    for path in sorted(work_dir.glob("*/scalars.jsonl")):
        rows += [json.loads(line) for line in path.read_text().splitlines()]
    return rows


@pytest.mark.slow
def test_amp_accumulation_resume_logs_grad_norm_like_the_uninterrupted_run(tmp_path):
    """The AMP config (4 micro-batches per update, clip_grad) resumed at a window boundary:
    the iterations before the resumed run's first update log the saved grad_norm."""
    args = ["--config", "configs/digits_amp_bf16_accum.yaml", *QUIET,
            "train_cfg.max_iters=32", "train_cfg.val_interval=16",
            "default_hooks.checkpoint.interval=12", "param_scheduler.0.end=8",
            "param_scheduler.1.begin=8"]
    reference, work = _chain(tmp_path, args, ["iter:14"])
    expected, got = records(reference, "train"), records(work, "train")
    assert [r["iter"] for r in got] == list(range(1, 33))
    assert all("grad_norm" in r for r in expected[4:])  # measured from the first update on
    assert got == expected


@pytest.mark.slow
def test_kills_before_the_first_checkpoint_and_after_an_epoch_end_leave_each_record_once(
        tmp_path):
    """A kill before any checkpoint, restarted by ``--resume auto``, continues the same run
    folder; a checkpoint saved by iteration at an epoch's last iteration precedes that
    epoch's validation (flushed to disk by the best checkpoint), which the resumed run
    repeats: its earlier record is dropped."""
    args = ["--config", "configs/digits_sgd_multistep.yaml", *QUIET, "train_cfg.max_epochs=2",
            "train_dataloader.batch_size=64", "+default_hooks.checkpoint.by_epoch=false",
            "default_hooks.checkpoint.interval=23", "+default_hooks.checkpoint.save_best=accuracy",
            "param_scheduler.1.milestones=[1]"]
    reference, work = _chain(tmp_path, args, ["iter:20", "iter:24"])
    assert len([p for p in work.iterdir() if (p / "scalars.jsonl").is_file()]) == 1
    assert _all_records(work) == _all_records(reference)
    assert [r["iter"] for r in records(work, "val")] == [23, 46]


def test_resumed_logger_drops_the_records_written_after_the_checkpoint(tmp_path):
    """The rule itself, on a file as a killed run leaves it (last line cut by the kill)."""
    lines = [{"mode": "train", "epoch": 0, "iter": 1}, {"mode": "train", "epoch": 0, "iter": 2},
             {"mode": "val", "epoch": 0, "iter": 2},   # by-iteration validation, then the save
             {"mode": "val", "epoch": 1, "iter": 2},   # the epoch's end after the save
             {"mode": "train", "epoch": 1, "iter": 3}]
    text = "".join(json.dumps(r) + "\n" for r in lines) + '{"mode": "tr'
    (tmp_path / "scalars.jsonl").write_text(text)
    accelerator = Accelerator(cpu=True)
    MetricLogger(accelerator, tmp_path, progress_bar=False, initial=2, initial_epoch=0,
                 resumed=True).close()
    kept = [json.loads(line) for line in (tmp_path / "scalars.jsonl").read_text().splitlines()]
    assert kept == lines[:3]
    MetricLogger(accelerator, tmp_path, progress_bar=False, initial=0, resumed=True).close()
    assert (tmp_path / "scalars.jsonl").read_text() == ""
    assert latest_run_dir(tmp_path) is None
