"""``accelwrap schedule``: the preview equals what a real (shortened) training run logs."""

from __future__ import annotations

import csv
import json
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from accelwrap.cli import main
from accelwrap.config import load_config
from accelwrap.runner import Runner
from accelwrap.runner.run_log import latest_run_dir
from accelwrap.tools.common import load_plain
from accelwrap.tools.schedule import simulate
from accelwrap.tools.schedule_plot import panels

CONFIGS = Path(__file__).parents[2] / "configs"
QUIET_HOOKS = {"checkpoint": {"interval": 10**6, "save_last": False},
               "logger": {"interval": 1, "trackers": [], "progress_bar": False,
                          "per_group": True}}  # the schedule's columns: every group
# Shortened runs: bigger batches (fewer iterations per epoch) keep every milestone and
# window of the schedule inside the run; the plateau run stops before its patience can
# run out (its values follow validation metrics, which a preview cannot know).
SHORTEN = {
    "digits_sgd_multistep": ["train_dataloader.batch_size=256"],
    "digits_adamw_cosine": ["train_dataloader.batch_size=256"],
    "digits_amp_bf16_accum": ["train_dataloader.batch_size=64", "train_cfg.max_iters=120",
                              "param_scheduler.0.end=30"],
    "digits_plateau": ["train_dataloader.batch_size=256", "train_cfg.max_epochs=2"],
    "gan_ring2d": ["train_dataloader.batch_size=512", "train_cfg.max_epochs=24",
                   "param_scheduler.generator.0.end=20"],
    # on: updates schedulers tick once per accumulation window; no poisoned (skipped) updates,
    # which a preview cannot know of
    "seq_gru_tokens": ["train_cfg.max_iters=82", "train_dataloader.dataset.poison_every=0",
                       "param_scheduler.1.end=20"],
}
HYPER = ("lr", "base_lr", "momentum")


def test_every_shipped_config_has_a_shortened_run():
    shipped = {p.stem for p in CONFIGS.glob("*.yaml") if not p.name.startswith("_")}
    assert shipped == set(SHORTEN)


def _is_hyper(key: str) -> bool:
    return any(part in HYPER for part in key.split(".")[:2])


@pytest.mark.parametrize("name", sorted(SHORTEN))
def test_csv_equals_the_training_log(name, tmp_path, capsys):
    cfg = load_plain(str(CONFIGS / f"{name}.yaml"), SHORTEN[name])
    cfg.update(default_hooks=QUIET_HOOKS, work_dir=str(tmp_path / "work"))
    cfg.pop("val_dataloader") if name != "digits_plateau" else None
    path = tmp_path / "short.yaml"
    path.write_text(yaml.safe_dump(cfg))

    assert main(["schedule", str(path), "--csv", str(tmp_path / "lr.csv")]) == 0
    with open(tmp_path / "lr.csv", newline="") as f:
        rows = list(csv.DictReader(f))

    Runner.from_cfg(load_config(path)).train()
    records = [json.loads(line)
               for line in (latest_run_dir(tmp_path / "work") / "scalars.jsonl").read_text()
               .splitlines()]
    train = [r for r in records if r["mode"] == "train"]

    assert len(train) == len(rows) > 0
    columns = [k for k in rows[0] if k not in ("iter", "epoch")]
    assert sorted(columns) == sorted(k for k in train[0] if _is_hyper(k))
    for record in train:
        row = rows[record["iter"] - 1]  # a record holds the values its iteration used
        assert int(row["epoch"]) == record["epoch"]
        for key in columns:
            assert float(row[key]) == record[key], (name, record["iter"], key)
    assert len({row[columns[0]] for row in rows}) > 1 or name == "digits_plateau"


def test_summary_names_windows_and_milestones(capsys):
    assert main(["schedule", str(CONFIGS / "digits_sgd_multistep.yaml"),
                 "--epoch-length", "10"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("100 iterations = 10 epochs x 10 iterations")
    lines = {line.split()[0]: line.split() for line in out.splitlines()[4:] if line[:1].isdigit()}
    assert lines["0"][-2:] == ["0.01", "0.9"]                 # start: warm-up factor 0.1
    assert lines["30"][-2:] == ["0.1", "0.9"] and "warm-up" in " ".join(lines["30"])
    assert lines["60"][-2] == "0.01" and lines["90"][-2] == "0.001"  # epochs 6 and 9
    assert lines["99"][2:4] == ["last", "iteration"]


def test_optim_wrapper_dict_members_get_their_own_panels():
    cfg = load_plain(str(CONFIGS / "gan_ring2d.yaml"))
    trace = simulate(cfg, epoch_length=4)
    assert set(panels(trace)) == {("generator", "lr"), ("discriminator", "lr")}
    windows = {(w.member, w.name): (w.begin, w.end, w.marks) for w in trace.windows}
    assert windows[("generator", "CosineAnnealingLR")][:2] == (40, 160)
    assert windows[("discriminator", "StepLR")] == (0, 160, (40, 80, 120))


def test_scheduled_momentum_and_weight_decay_are_recorded(tmp_path):
    cfg = load_plain(str(CONFIGS / "digits_adamw_cosine.yaml"))
    cfg["param_scheduler"] = [
        {"type": "CosineAnnealingMomentum", "T_max": 20, "eta_min": 0.85, "by_epoch": False},
        {"type": "LinearParamScheduler", "param_name": "weight_decay", "start_factor": 1.0,
         "end_factor": 0.5, "by_epoch": False, "end": 20}]
    trace = simulate(cfg, epoch_length=5)
    assert set(panels(trace)) == {("", "momentum"), ("", "weight_decay")}
    assert (trace.columns["momentum.0"][0] == 0.9
            and trace.columns["momentum.0"][20] == pytest.approx(0.85))
    # weight_decay groups differ (paramwise: 0.05 and 0.0): two lines, one of them all zero
    decays = panels(trace)[("", "weight_decay")]
    assert len(decays) == 2 and any(set(v) == {0.0} for v in decays.values())
    assert max(trace.columns["weight_decay.0"][20:]) == pytest.approx(0.025)


def test_png_is_written(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "lr.png"
    assert main(["schedule", str(CONFIGS / "gan_ring2d.yaml"), "--epoch-length", "4",
                 "--out", str(out)]) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_without_matplotlib_csv_and_summary_still_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    code = main(["schedule", str(CONFIGS / "digits_sgd_multistep.yaml"), "--epoch-length", "5",
                 "--csv", str(tmp_path / "lr.csv"), "--out", str(tmp_path / "lr.png")])
    captured = capsys.readouterr()
    assert code == 1
    assert "pip install matplotlib" in captured.err
    assert "last iteration" in captured.out
    assert len((tmp_path / "lr.csv").read_text().splitlines()) == 51
    assert not (tmp_path / "lr.png").exists()


def test_bad_epoch_length_and_missing_sections(tmp_path, capsys):
    assert main(["schedule", str(CONFIGS / "digits_sgd_multistep.yaml"),
                 "--epoch-length", "0"]) == 1
    assert "epoch length" in capsys.readouterr().err
    path = tmp_path / "x.yaml"
    path.write_text("optim_wrapper: {optimizer: {type: SGD, lr: 0.1}}\n")
    assert main(["schedule", str(path)]) == 1
    err = capsys.readouterr().err
    assert "train_cfg: required by 'accelwrap schedule'" in err


def test_the_preview_does_not_warn_about_a_missing_optimizer_step():
    """Schedulers warn when stepped before the optimizer (as MMEngine's do); a preview trains
    nothing, so that warning would only confuse."""
    cfg = {"model": {"type": "MLPClassifier"}, "train_cfg": {"max_epochs": 2},
           "optim_wrapper": {"optimizer": {"type": "SGD", "lr": 1.0}},
           "param_scheduler": [{"type": "MultiStepLR", "milestones": [1], "gamma": 0.5}]}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert simulate(cfg, epoch_length=3).columns["lr"] == [1.0] * 3 + [0.5] * 3
