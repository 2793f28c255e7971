"""The TensorBoard tracker receives the same scalars as ``scalars.jsonl``, at the same steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.runner.helpers import records, run


def event_scalars(root: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar TensorBoard shows for the runs under ``root``: ``{tag: [(step, value)]}``.

    Each folder of event files is read as one run, as TensorBoard reads it (the files
    in order, a restart marker discarding the steps it supersedes).
    """
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    out: dict[str, list[tuple[int, float]]] = {}
    for folder in sorted({p.parent for p in Path(root).rglob("events.out.tfevents.*")}):
        events = EventAccumulator(str(folder), size_guidance={SCALARS: 0})
        events.Reload()
        for tag in events.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in events.Scalars(tag))
    return out


def jsonl_as_events(work_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """``scalars.jsonl`` in TensorBoard's shape: ``mode/key`` tags, float32 values."""
    out: dict[str, list[tuple[int, float]]] = {}
    for mode in ("train", "val"):
        for record in records(work_dir, mode):
            for key, value in record.items():
                if key not in ("mode", "epoch", "iter"):
                    out.setdefault(f"{mode}/{key}", []).append(
                        (record["iter"], float(np.float32(value))))
    return out


def test_tensorboard_gets_train_scalars_every_iteration_and_val_metrics_every_epoch(tmp_path):
    pytest.importorskip("tensorboard")
    runner = run("digits_sgd_multistep", tmp_path, "train_cfg.max_epochs=2",
                 "train_dataloader.batch_size=256", "default_hooks.logger.trackers=auto")
    events = event_scalars(tmp_path)
    assert events == jsonl_as_events(tmp_path)
    length = runner.epoch_length
    assert [step for step, _ in events["train/lr"]] == list(range(1, 2 * length + 1))
    assert {"train/loss", "train/momentum", "val/loss"} <= set(events)
    assert [step for step, _ in events["val/accuracy"]] == [length, 2 * length]
    # LinearLR warm-up from 0.1 * lr: the first iteration logs 0.01.
    assert events["train/lr"][0][1] == pytest.approx(0.01)
    # The hyper-parameters of the run are stored with it (flattened config).
    hparams = "".join(p.read_text() for p in tmp_path.rglob("hparams.yml"))
    assert "optim_wrapper.optimizer.lr: 0.1" in hparams


def test_a_resumed_run_replaces_the_steps_logged_after_its_checkpoint(tmp_path):
    pytest.importorskip("tensorboard")
    short = ["train_cfg.max_epochs=2", "train_dataloader.batch_size=256",
             "default_hooks.logger.trackers=[tensorboard]",
             "+default_hooks.checkpoint.by_epoch=false", "default_hooks.checkpoint.interval=4",
             "default_hooks.checkpoint.max_keep_ckpts=-1"]
    # A finished run stands in for one killed after iteration 12. Resumed from its
    # iteration-4 checkpoint, logging every 2nd iteration: TensorBoard must show what
    # scalars.jsonl keeps, iterations 1-4 of the first run and 6, 8, ... of the second.
    run("digits_sgd_multistep", tmp_path, *short)
    run("digits_sgd_multistep", tmp_path, *short, "default_hooks.logger.interval=2",
        f"+resume={tmp_path / 'checkpoints' / 'iter_4'}")
    assert len({p.name for p in tmp_path.rglob("events.out.tfevents.*")}) > 2  # both runs wrote
    events = event_scalars(tmp_path)
    assert events == jsonl_as_events(tmp_path)
    assert [step for step, _ in events["train/loss"]] == [1, 2, 3, 4, 6, 8, 10, 12]
    assert [step for step, _ in events["val/loss"]] == [6, 12]
