"""MMEngine's loop and runner sections read with MMEngine's meaning."""

from __future__ import annotations

import copy
import sys
import types

import pytest
from torch import nn

from accelwrap.cli import main
from accelwrap.optim import build_optim_wrapper
from accelwrap.runner.build import scale_lr
from accelwrap.runner.settings import runner_arguments, runner_config_problems
from accelwrap.runner.train_cfg import parse_train_cfg

mmengine_optim = pytest.importorskip("mmengine.optim")


def test_train_cfg_type_maps_to_by_epoch():
    assert parse_train_cfg({"type": "EpochBasedTrainLoop", "max_epochs": 3}).by_epoch
    iters = parse_train_cfg({"type": "IterBasedTrainLoop", "max_iters": 5000})
    assert (iters.by_epoch, iters.val_interval) == (False, 1000)  # MMEngine's defaults
    with pytest.raises(ValueError, match="use EpochBasedTrainLoop .* or IterBasedTrainLoop"):
        parse_train_cfg({"type": "MyLoop", "max_epochs": 3})
    with pytest.raises(ValueError, match="dynamic_intervals"):
        parse_train_cfg({"max_epochs": 3, "dynamic_intervals": [[2]]})


@pytest.mark.parametrize("bs,world,base", [(4, 2, 16), (32, 1, 16), (8, 3, 24)])
def test_auto_scale_lr_equals_mmengine(bs, world, base, monkeypatch):
    if "cv2" not in sys.modules:
        monkeypatch.setitem(sys.modules, "cv2", types.ModuleType("cv2"))
    from mmengine.runner import Runner as MMRunner
    optim = {"optimizer": {"type": "SGD", "lr": 0.02, "momentum": 0.9},
             "paramwise_cfg": {"custom_keys": {"0": {"lr_mult": 0.1}}}}
    auto = {"enable": True, "base_batch_size": base}
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    mm_wrapper = mmengine_optim.build_optim_wrapper(model, copy.deepcopy(optim))
    fake = types.SimpleNamespace(_train_dataloader={"batch_size": bs}, world_size=world,
                                 param_schedulers=None, logger=types.SimpleNamespace(
                                     info=lambda *a: None))
    MMRunner.scale_lr(fake, mm_wrapper, auto)
    cfg, line = scale_lr({"optim_wrapper": optim, "auto_scale_lr": auto}, bs, world)
    ours = build_optim_wrapper(model, cfg["optim_wrapper"])
    assert [g["lr"] for g in ours.optimizer.param_groups] == pytest.approx(
        [g["lr"] for g in mm_wrapper.optimizer.param_groups])
    assert f"current batch size is {bs * world}" in line
    assert optim["optimizer"]["lr"] == 0.02  # the config is not modified


def test_auto_scale_lr_off_leaves_the_lr():
    cfg, line = scale_lr({"optim_wrapper": {"optimizer": {"type": "SGD", "lr": 0.1}},
                          "auto_scale_lr": {"base_batch_size": 16}}, 64, 8)
    assert line is None and cfg["optim_wrapper"]["optimizer"]["lr"] == 0.1


def test_mmengine_sections_are_accepted_and_consumed():
    cfg = {"optim_wrapper": {"optimizer": {"type": "SGD", "lr": 0.1}},
           "train_cfg": {"type": "EpochBasedTrainLoop", "max_epochs": 2},
           "val_cfg": {"type": "ValLoop"}, "test_cfg": {"type": "TestLoop"},
           "test_dataloader": {}, "visualizer": {"type": "Vis"}, "env_cfg": {},
           "auto_scale_lr": {"enable": False, "base_batch_size": 16},
           "randomness": {"seed": 1, "deterministic": False, "diff_rank_seed": False},
           "custom_imports": {"imports": ["json"], "allow_failed_imports": False}}
    known = ["optim_wrapper", "train_cfg", "randomness"]
    assert runner_config_problems(cfg, known) == []
    kwargs, notes = runner_arguments(cfg, known, world_size=1)
    # test_cfg and test_dataloader are Runner arguments now (`accelwrap test` runs them)
    assert sorted(kwargs) == ["optim_wrapper", "randomness", "test_cfg", "test_dataloader",
                              "train_cfg"]
    assert not any(n.startswith("test_cfg:") for n in notes)  # `accelwrap test` runs it
    bad = runner_config_problems({"val_cfg": {"type": "TestLoop"}, "auto_scale_lr": {
        "enable": True}, "randomness": {"sed": 1}}, known)
    assert len(bad) == 3 and not any("did you mean 'val_cfg'" in p for p in bad)


def test_check_names_what_training_ignores(tmp_path, capsys):
    path = tmp_path / "frag.yaml"
    path.write_text("optim_wrapper: {optimizer: {type: SGD, lr: 0.1}}\n"
                    "train_cfg: {max_epochs: 2}\ntest_cfg: {}\nvisualizer: {type: X}\n"
                    "test_evaluator: {type: Accuracy}\n")
    assert main(["check", str(path)]) == 0
    err = capsys.readouterr().err
    assert "not checked: no model" in err and "test_cfg" not in err
    assert "test_evaluator: not used: `accelwrap test` reports the model's val_step" in err
    assert "visualizer: not implemented" in err and "did you mean" not in err


def test_schedule_on_a_fragment(tmp_path, capsys):
    path = tmp_path / "frag.yaml"
    path.write_text("optim_wrapper: {optimizer: {type: SGD, lr: 1.0}}\ntrain_cfg: {max_epochs: 4}\n"
                    "param_scheduler: [{type: MultiStepLR, milestones: [2], gamma: 0.5}]\n")
    assert main(["schedule", str(path), "--epoch-length", "2"]) == 0
    captured = capsys.readouterr()
    assert "stand-in" in captured.err and captured.out.startswith("8 iterations")


def test_convert_command(tmp_path, capsys):
    src = tmp_path / "old.py"
    src.write_text("lr = 0.1\noptim_wrapper = dict(optimizer=dict(type='SGD', lr=lr))\n"
                   "train_cfg = dict(type='IterBasedTrainLoop', max_iters=10)\n"
                   "visualizer = dict(type='V')\n"
                   "default_hooks = dict(timer=dict(type='IterTimerHook'), "
                   "checkpoint=dict(type='CheckpointHook', interval=5, save_best='auto'))\n")
    out = tmp_path / "new.yaml"
    assert main(["convert", str(src), "-o", str(out)]) == 0
    report = capsys.readouterr().out
    assert "dropped: lr (a helper variable" in report and "dropped: visualizer" in report
    assert "dropped: default_hooks.timer" in report
    assert main(["check", str(out)]) == 0


def test_val_cfg_null_with_a_val_dataloader_is_refused_as_mmengine_refuses_it():
    base = {"val_dataloader": {"dataset": {"type": "DigitsDataset"}, "batch_size": 8}}
    phrase = "should be either all None or not None"
    refused = runner_config_problems({**base, "val_cfg": None}, ["val_dataloader"])
    assert any(phrase in p and "val_cfg: {}" in p for p in refused)
    assert not any(phrase in p for p in runner_config_problems({**base, "val_cfg": {}},
                                                                ["val_dataloader"]))
    assert not any(phrase in p for p in runner_config_problems({"val_cfg": None}, []))
