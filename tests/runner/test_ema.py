"""``custom_hooks: [{type: EMAHook, ...}]``: averaged weights as MMEngine computes them.

The reference is MMEngine's own ``ExponentialMovingAverage`` (``mmengine.model``), driven
as its ``EMAHook.after_train_iter`` drives it (before ``begin_iter``: copy the weights).
"""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch
from mmengine.model.averaged_model import ExponentialMovingAverage
from omegaconf import OmegaConf
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from accelwrap.errors import ConfigError
from accelwrap.runner import Runner
from accelwrap.runner.ema import parse_custom_hooks
from tests.runner.helpers import config, records, run

EMA_HOOK = "+custom_hooks=[{type: EMAHook, momentum: 0.01}]"


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


@pytest.mark.parametrize("hook", [dict(momentum=0.1), dict(momentum=0.3, interval=3),
                                  dict(momentum=0.2, update_buffers=True),
                                  dict(momentum=0.1, begin_iter=4)])
def test_averaged_weights_equal_mmengines(hook):
    ema, _ = parse_custom_hooks([dict(type="EMAHook", **hook)])
    model = _model()
    ema.attach(model)
    begin = hook.pop("begin_iter", 0)
    reference = ExponentialMovingAverage(model, **hook)
    for step in range(10):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model(torch.randn(5, 3))  # BatchNorm running statistics move
        ema.update(iteration=step, epoch=0)
        if step + 1 >= begin:
            reference.update_parameters(model)
        else:
            for k, v in reference.module.state_dict().items():
                v.copy_(model.state_dict()[k])
    expected = reference.module.state_dict()
    assert set(ema.averaged) <= set(expected)
    for name, value in ema.averaged.items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=0)
    assert ema.steps == int(reference.steps)


def test_validation_uses_the_averaged_weights_and_training_is_unchanged(tmp_path):
    run("digits_sgd_multistep", tmp_path / "plain", "train_cfg.max_epochs=2")
    run("digits_sgd_multistep", tmp_path / "ema", "train_cfg.max_epochs=2", EMA_HOOK)
    plain, ema = (tmp_path / name / "checkpoints" / "epoch_2" for name in ("plain", "ema"))
    averaged = load_file(ema / "ema.safetensors")
    assert averaged.keys() == load_file(plain / "model.safetensors").keys()
    for name, value in load_file(plain / "model.safetensors").items():
        torch.testing.assert_close(load_file(ema / "model.safetensors")[name], value)
    assert records(tmp_path / "plain", "val") != records(tmp_path / "ema", "val")
    with safe_open(str(ema / "ema.safetensors"), framework="pt") as f:
        assert f.metadata() == {"steps": "90"}


def test_resume_mid_epoch_gives_the_same_averaged_weights(tmp_path):
    args = ("train_cfg.max_epochs=2", EMA_HOOK, "+default_hooks.checkpoint.by_epoch=false",
            "default_hooks.checkpoint.interval=20", "default_hooks.checkpoint.max_keep_ckpts=-1")
    run("digits_sgd_multistep", tmp_path / "whole", *args)
    cut = tmp_path / "cut"
    (cut / "checkpoints").mkdir(parents=True)
    shutil.copytree(tmp_path / "whole" / "checkpoints" / "iter_60", cut / "checkpoints" / "iter_60")
    assert json.loads((cut / "checkpoints" / "iter_60" / "runner_state.json").read_text())[
        "batch_in_epoch"] == 15  # inside the second epoch
    cfg = config("digits_sgd_multistep", cut, *args)
    Runner.from_cfg(OmegaConf.merge(cfg, {"resume": str(cut / "checkpoints" / "iter_60")})).train()
    whole = load_file(tmp_path / "whole" / "checkpoints" / "iter_90" / "ema.safetensors")
    resumed = load_file(cut / "checkpoints" / "iter_90" / "ema.safetensors")
    assert whole.keys() == resumed.keys()
    for name, value in whole.items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=0)


def test_other_custom_hooks_get_one_warning_line(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="accelwrap"):
        Runner.from_cfg(config("digits_sgd_multistep", tmp_path,
                               "+custom_hooks=[{type: EmptyCacheHook}]"))
    lines = [r.getMessage() for r in caplog.records if "custom_hooks" in r.getMessage()]
    assert lines == ["custom_hooks[0]: 'EmptyCacheHook' is not run by accelwrap (of "
                     "custom_hooks it runs only EMAHook); ignored"]


@pytest.mark.parametrize("hook, message", [
    ("{type: EMAHook, momentum: 0.9998}", None),
    ("{type: EMAHook, momentum: 1.5}", "custom_hooks[0].momentum: expected a number in (0, 1)"),
    ("{type: EMAHook, momentun: 0.1}", "unexpected argument 'momentun'; did you mean 'momentum'"),
    ("{type: EMAHook, begin_iter: 2, begin_epoch: 1}", "set begin_iter or begin_epoch, not both"),
])
def test_bad_ema_settings_are_config_errors(tmp_path, hook, message):
    cfg = config("digits_sgd_multistep", tmp_path, f"+custom_hooks=[{hook}]")
    if message is None:  # MMEngine's momentum is the new value's weight: 0.9998 only warns
        assert Runner.from_cfg(cfg).ema.momentum == 0.9998
        return
    with pytest.raises(ConfigError) as err:
        Runner.from_cfg(cfg)
    assert message in str(err.value)
