"""``accelwrap check``: every problem of a config in one run, nothing built."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch import nn

from accelwrap.checks.engine import check_config, check_optim_wrapper
from accelwrap.cli import main
from accelwrap.config import load_config
from accelwrap.errors import ConfigError
from accelwrap.runner import Runner
from accelwrap.runner.models import MODELS

CONFIGS = sorted(p for p in (Path(__file__).parents[2] / "configs").glob("*.yaml")
                 if not p.name.startswith("_"))
BASE = Path(__file__).parents[2] / "configs" / "_base_digits.yaml"


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "exp.yaml"
    path.write_text(f"_base_: {BASE}\n{text}")
    return str(path)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_shipped_configs_have_no_problems(config, capsys):
    assert main(["check", str(config)]) == 0, capsys.readouterr().err


def test_checkpoint_by_epoch_is_checked_against_train_cfg(tmp_path, capsys):
    path = _write(tmp_path, """
optim_wrapper: {optimizer: {type: SGD, lr: 0.1}}
train_cfg: {_delete_: true, by_epoch: false, max_iters: 100}
default_hooks:
  checkpoint: {by_epoch: true}
""")
    assert main(["check", path]) == 1
    err = capsys.readouterr().err
    assert ("1 problem" in err
            and "default_hooks.checkpoint.by_epoch: True needs train_cfg.by_epoch=True" in err)


def test_four_kinds_of_mistake_in_one_run(tmp_path, capsys):
    path = _write(tmp_path, """
optim_wrapper:
  optimizer: {type: SDG, lr: 0.1}
param_scheduler:
  - {type: LinearLR, start_factr: 0.1, by_epoch: false, end: 30}
  - {type: MultiStepLR, milestones: [6, 9], gamma: fast}
modle: {type: MLPClassifier}
""")
    assert main(["check", path]) == 1
    err = capsys.readouterr().err
    assert "4 problems" in err
    assert ("optim_wrapper.optimizer.type: 'SDG' is not registered in OPTIMIZERS; "
            "did you mean 'SGD'?" in err)
    assert ("param_scheduler.0 (LinearLR): unexpected argument 'start_factr'; "
            "did you mean 'start_factor'?" in err)
    assert "param_scheduler.1.gamma: expected float, got 'fast' (str)" in err
    assert "modle: unknown top-level key; did you mean 'model'?" in err


def test_overrides_are_checked_too(tmp_path, capsys):
    path = _write(tmp_path, "optim_wrapper:\n  optimizer: {type: SGD, lr: 0.1}\n")
    assert main(["check", path, "optim_wrapper.optimizer.lr=fast"]) == 1
    assert "optim_wrapper.optimizer.lr: expected float | Tensor, got 'fast' (str) [SGD]" \
        in capsys.readouterr().err
    assert main(["check", path, "optim_wrapper.optimizer.lrr=0.1"]) == 1
    assert "did you mean 'lr'?" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["check", "groups", "schedule"])
def test_the_config_may_be_given_as_in_train(tmp_path, capsys, command):
    """``--config CONFIG``, with overrides on either side, as ``accelwrap train`` takes it."""
    path = _write(tmp_path, "optim_wrapper:\n  optimizer: {type: SGD, lr: 0.1}\n")
    assert main([command, "optim_wrapper.optimizer.lr=fast", "--config", path]) == 1
    assert "optim_wrapper.optimizer.lr" in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:
        main([command, "--config", path, "--config", path])
    assert done.value.code == 2
    assert f"accelwrap {command} takes one config" in capsys.readouterr().err


def test_nothing_is_built(tmp_path, capsys):
    @MODELS.register_module(name="_ExpensiveModelForCheck", force=True)
    class Expensive(nn.Module):
        def __init__(self, width: int = 1) -> None:
            raise AssertionError("check must not build the model")

    path = _write(tmp_path, "model: {_delete_: true, type: _ExpensiveModelForCheck, width: 3}\n"
                            "optim_wrapper:\n  optimizer: {type: SGD, lr: 0.1}\n")
    assert main(["check", path]) == 0, capsys.readouterr().err
    assert main(["check", path, "model.width=wide"]) == 1
    assert "model.width: expected int, got 'wide' (str) [Expensive]" in capsys.readouterr().err


def test_missing_section_and_bad_file(tmp_path, capsys):
    path = tmp_path / "exp.yaml"
    path.write_text("model: {type: MLPClassifier}\noptim_wrapper:\n  optimizer: {type: SGD, "
                    "lr: 0.1}\n")
    assert main(["check", str(path)]) == 1
    assert "train_dataloader: required section is missing" in capsys.readouterr().err
    assert main(["check", str(tmp_path / "nope.yaml")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_paramwise_cfg_problems_come_from_the_constructor():
    problems = check_optim_wrapper({"optimizer": {"type": "SGD", "lr": 0.1, "weight_decay": 1e-4},
                                    "paramwise_cfg": {"norm_decay_mul": 0.0}})
    assert (len(problems) == 1 and "norm_decay_mul" in problems[0]
            and "norm_decay_mult" in problems[0])


def test_every_optim_wrapper_form_is_checked():
    members = {"gen": {"optimizer": {"type": "Adam", "lr": 1e-3}},
               "disc": {"optimizer": {"type": "Adamm", "lr": 1e-3}, "clip_grd": {"max_norm": 1}}}
    problems = check_optim_wrapper(members)
    assert len(problems) == 2
    assert problems[0].startswith("optim_wrapper.disc (OptimWrapper): unexpected argument "
                                  "'clip_grd'; did you mean 'clip_grad'?")
    assert problems[1].startswith("optim_wrapper.disc.optimizer.type: 'Adamm' is not registered "
                                  "in OPTIMIZERS; did you mean 'Adam'")
    assert check_optim_wrapper({"type": "OptimWrapper"}) == [
        "optim_wrapper: no 'optimizer' key (e.g. optimizer: {type: SGD, lr: 0.01})"]
    assert "OPTIM_WRAPPER_CONSTRUCTORS" in check_optim_wrapper(
        {"constructor": "NoSuchCtor", "gen": {"optimizer": {"type": "SGD", "lr": 0.1}}})[0]


def test_scheduler_dict_per_member_and_conversion():
    problems = check_config({"param_scheduler": {
        "gen": [{"type": "LinearLR", "by_epoch": False, "convert_to_iter_based": True}],
        "disc": {"type": "CosineAnnealingLR", "T_max": 5, "eta_mn": 0.0}}})
    assert any(p.startswith("param_scheduler.gen.0: convert_to_iter_based=True") for p in problems)
    assert any(p.startswith("param_scheduler.disc (CosineAnnealingLR): "
                            "unexpected argument 'eta_mn'")
               for p in problems)


def test_scheduler_members_must_be_optim_wrapper_members():
    wrappers = {"generator": {"optimizer": {"type": "Adam"}},
                "discriminator": {"optimizer": {"type": "Adam"}}}
    schedulers = {"generater": [{"type": "StepLR", "step_size": 2}]}
    problems = check_config({"optim_wrapper": wrappers, "param_scheduler": schedulers})
    assert problems == ["param_scheduler.generater: not a member of optim_wrapper; "
                        "did you mean 'generator'?"]
    problems = check_config({"optim_wrapper": {"optimizer": {"type": "SGD", "lr": 0.1}},
                             "param_scheduler": {"generator": []}})
    assert problems[0].startswith("param_scheduler: a dict of scheduler lists")


def test_dataloader_values_are_type_checked(capsys):
    config = str(Path(__file__).parents[2] / "configs" / "digits_sgd_multistep.yaml")
    assert main(["check", config, "train_dataloader.batch_size=abc", "val_dataloader.shuffle=maybe",
                 "+train_dataloader.shufle=true"]) == 1
    err = capsys.readouterr().err
    assert "3 problems" in err
    assert "train_dataloader.batch_size: expected int, got 'abc' (str)" in err
    assert "val_dataloader.shuffle: expected bool, got 'maybe' (str)" in err
    assert "unexpected argument 'shufle'; did you mean 'shuffle'?" in err
    assert main(["check", config, "train_dataloader.batch_size=16"]) == 0
    # The runner runs the same check before it builds anything.
    with pytest.raises(ConfigError, match="train_dataloader.batch_size: expected int, got 'abc'"):
        Runner.from_cfg(load_config(config, ["train_dataloader.batch_size=abc"]))
