"""The text log a user reads: interval lines, banner, run folders, resume messages."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from accelwrap.runner.run_log import train_line
from accelwrap.tools.train import main
from tests.runner.helpers import QUIET, REPO, records, run, run_dir

SHORT = ["train_cfg.max_epochs=2", "train_dataloader.batch_size=256"]
NUMBER = r"\d+\.\d{4}"
TRAIN_LINE = re.compile(
    r"^\S+ \S+ - accelwrap - INFO - Epoch\(train\) \[(\d+)\]\[ *(\d+)/(\d+)\]"
    rf"  lr: (\S+e[-+]\d+)  eta: (\d+:\d\d:\d\d)  time: ({NUMBER})  data_time: ({NUMBER})"
    r"  memory: (\d+)  loss: (\S+)")


def log_lines(work_dir: Path) -> list[str]:
    folder = run_dir(work_dir)
    return (folder / f"{folder.name}.log").read_text().splitlines()


def test_every_interval_logs_one_mmengine_line_matching_scalars_jsonl(tmp_path):
    runner = run("digits_sgd_multistep", tmp_path, *SHORT, "default_hooks.logger.interval=2")
    lines = log_lines(tmp_path)
    train = [m for m in map(TRAIN_LINE.match, lines) if m]
    assert len(train) == runner.max_iters // 2 == len(records(tmp_path, "train"))
    for match, record in zip(train, records(tmp_path, "train"), strict=True):
        epoch, done, length = (int(match[i]) for i in (1, 2, 3))
        assert (epoch - 1, (epoch - 1) * length + done) == (record["epoch"], record["iter"])
        assert length == runner.epoch_length
        assert float(match[4]) == pytest.approx(record["lr"], rel=1e-4)
        assert float(match[9]) == pytest.approx(record["loss"], abs=1e-4)
        assert float(match[6]) > 0 and float(match[7]) >= 0 and int(match[8]) > 0
    val = [line.split(" - INFO - ")[1] for line in lines if "Epoch(val)" in line]
    assert [v.split("  ")[0] for v in val] == ["Epoch(val) [1][3/3]", "Epoch(val) [2][3/3]"]
    assert all(re.search(r"accuracy: \d\.\d{4}", v) for v in val)


def test_banner_names_versions_device_files_resume_point_and_seed(tmp_path):
    run("digits_sgd_multistep", tmp_path, *SHORT)
    text = "\n".join(log_lines(tmp_path)[:10])
    for expected in ("run started", "accelwrap ", "torch ", "accelerate ", "world size: 1",
                     "device: cpu", "mixed precision: no", f"work dir: {tmp_path}",
                     f"run dir: {run_dir(tmp_path)}", "resume: from scratch", "seed: 0"):
        assert expected in text


def test_iteration_based_lines_count_iterations_of_the_run():
    line = train_line({"lr": 0.1, "loss": 1.0}, epoch=0, iteration=20, epoch_length=7,
                      max_iters=300, by_epoch=False, in_epoch=6,
                      timing={"eta": 3725.2, "time": 0.5, "data_time": 0.01, "memory": 12})
    assert line == ("Iter(train) [ 20/300]  lr: 1.0000e-01  eta: 1:02:05  time: 0.5000  "
                    "data_time: 0.0100  memory: 12  loss: 1.0000")


def test_each_run_gets_its_own_folder_and_a_resume_continues_it(tmp_path):
    ckpt = ["+default_hooks.checkpoint.by_epoch=false", "default_hooks.checkpoint.interval=4",
            "default_hooks.checkpoint.max_keep_ckpts=-1"]
    run("digits_sgd_multistep", tmp_path, *SHORT, *ckpt)
    first = run_dir(tmp_path)
    # A fresh run into a work dir holding checkpoints is refused (test_workdir.py): the first
    # run's checkpoints wait aside while a second fresh run starts, then come back.
    (tmp_path / "checkpoints").rename(tmp_path.parent / f"{tmp_path.name}-checkpoints")
    run("digits_sgd_multistep", tmp_path, *SHORT, "default_hooks.checkpoint.interval=1000",
        "+default_hooks.checkpoint.save_last=false")
    (tmp_path.parent / f"{tmp_path.name}-checkpoints").rename(tmp_path / "checkpoints")
    second = run_dir(tmp_path)
    assert first != second and first.parent == second.parent == tmp_path
    # The second run did not append to the first's files.
    assert len(records(tmp_path, "train")) == 12
    assert len((first / "scalars.jsonl").read_text().splitlines()) == 12 + 2
    # Resuming the first run's checkpoint continues the first run's folder and files.
    run("digits_sgd_multistep", tmp_path, *SHORT, *ckpt,
        f"+resume={tmp_path / 'checkpoints' / 'iter_4'}")
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == sorted(
        ["checkpoints", first.name, second.name])
    log = (first / f"{first.name}.log").read_text()
    assert log.count("run started") == 2
    assert f"resumed from {tmp_path / 'checkpoints' / 'iter_4'} (epoch 0, iter 4)" in log
    rows = (first / "scalars.jsonl").read_text().splitlines()
    assert [r for r in rows if '"train"' in r][3:5] == [r for r in rows if '"train"' in r][3:5]
    assert len(rows) == 12 + 2  # iterations 5-12 replaced, not appended twice


def test_resume_auto_says_what_it_does(tmp_path, capsys):
    args = [str(REPO / "configs" / "digits_sgd_multistep.yaml"), "--work-dir", str(tmp_path),
            *QUIET, *SHORT, "--resume", "auto"]
    assert main(args) == 0
    assert "starting from scratch" in "\n".join(log_lines(tmp_path))
    assert main(args) == 0  # finished: nothing to train
    lines = log_lines(tmp_path)
    assert lines[-1].endswith("already finished at iter 12; nothing to do")
    assert len(records(tmp_path, "train")) == 12


def test_one_lr_per_optimizer_unless_per_group_is_asked(tmp_path):
    run("digits_adamw_cosine", tmp_path, "train_cfg.max_epochs=2")
    first = records(tmp_path, "train")[0]
    assert {"lr", "base_lr", "momentum"} <= set(first)
    assert not [k for k in first if re.fullmatch(r"(lr|momentum)\.\d+", k)]


def test_bad_per_group_value_is_named(tmp_path):
    with pytest.raises(ValueError, match="default_hooks.logger.per_group: expected bool, got 3"):
        run("digits_sgd_multistep", tmp_path, "+default_hooks.logger.per_group=3")


def test_no_progress_bar_when_stderr_is_not_a_terminal(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("ACCELERATE_USE_CPU", None)
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train.py"),
         str(REPO / "configs" / "digits_sgd_multistep.yaml"), "--work-dir", str(tmp_path),
         "train_cfg.max_epochs=1", "train_dataloader.batch_size=256",
         "default_hooks.logger.trackers=null", "default_hooks.logger.interval=3"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "\r" not in proc.stderr and "it/s" not in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if "Epoch(train)" in line]) == 2
    assert "run started" in proc.stderr
