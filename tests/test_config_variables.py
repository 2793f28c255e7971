"""Config variables (``${base_lr}``), ``${calc:...}`` arithmetic and ``custom_imports``."""

from __future__ import annotations

import sys
import textwrap

import pytest
from omegaconf import OmegaConf

from accelwrap.config import ConfigError, calc, load_config, save_config
from accelwrap.registry import MODELS
from accelwrap.runner.settings import runner_config_problems


def write(tmp_path, text: str, name: str = "cfg.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize("text,value", [
    ("1 + 2 * 3", 7), ("(1 + 2) * 3", 9), ("210 // 2", 105), ("7 % 4", 3), ("2 ** 10", 1024),
    ("-3 + +1", -2), ("0.01 * 0.05", 0.01 * 0.05), ("1e-4 / 4", 1e-4 / 4), ("12", 12)])
def test_calc_is_python_arithmetic(text, value):
    assert calc(text) == value
    assert type(calc(text)) is type(value)


@pytest.mark.parametrize("text", ["__import__('os')", "x + 1", "[1, 2]", "1 if 1 else 2",
                                  "'a' * 3", "1 / 0", "2 ** 100000", "True + 1", "1 +"])
def test_calc_refuses_anything_but_arithmetic(text):
    with pytest.raises(ValueError, match="calc"):
        calc(text)


def test_helper_variables_are_resolved_and_dropped(tmp_path):
    path = write(tmp_path, """\
        base_lr: 4e-3
        max_epochs: 210
        optimizer: {type: AdamW, lr: '${base_lr}', weight_decay: 0.05}
        optim_wrapper: {optimizer: '${optimizer}'}
        param_scheduler:
          - {type: CosineAnnealingLR, eta_min: '${calc:${base_lr} * 0.05}',
             begin: '${calc:${max_epochs} // 2}', end: '${max_epochs}', T_max: 105}
          - {type: LinearLR, end: '${calc:(${max_epochs} - 10) // 2}'}
        train_cfg: {max_epochs: '${max_epochs}', val_interval: 10}
        """)
    cfg = load_config(path, ["base_lr=0.01"])
    assert set(cfg) == {"optim_wrapper", "param_scheduler", "train_cfg"}
    assert cfg.optim_wrapper.optimizer == {"type": "AdamW", "lr": 0.01, "weight_decay": 0.05}
    first, second = cfg.param_scheduler
    assert (first.eta_min, first.begin, first.end) == (0.01 * 0.05, 105, 210)
    assert second.end == 100 and cfg.train_cfg.max_epochs == 210
    saved = save_config(cfg, tmp_path / "saved.yaml").read_text()
    assert "${" not in saved and "base_lr" not in saved
    assert load_config(tmp_path / "saved.yaml") == cfg


def test_an_unreferenced_key_is_still_a_typo(tmp_path):
    path = write(tmp_path, """\
        base_lr: 0.1
        optim_wraper: {optimizer: {type: SGD, lr: '${base_lr}'}}
        """)
    cfg = load_config(path)
    assert "base_lr" not in cfg
    problems = runner_config_problems(OmegaConf.to_container(cfg), ["optim_wrapper"])
    assert problems == ["optim_wraper: unknown top-level key; did you mean 'optim_wrapper'?"]


def test_a_referenced_section_stays(tmp_path):
    path = write(tmp_path, """\
        train_cfg: {max_epochs: 12}
        param_scheduler: {type: StepLR, step_size: '${calc:${train_cfg.max_epochs} // 3}'}
        """)
    cfg = load_config(path)
    assert cfg.train_cfg.max_epochs == 12 and cfg.param_scheduler.step_size == 4


def test_every_bad_reference_is_reported(tmp_path):
    path = write(tmp_path, """\
        a: {x: '${nothing}'}
        b: {y: '${calc:1 / 0}'}
        c: {z: '${calc:os.system}'}
        """)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert [p.split(":")[0] for p in err.value.problems] == ["a", "b", "c"]
    assert "division by zero" in err.value.problems[1]


MODULE = """\
from torch import nn
from accelwrap.registry import MODELS

@MODELS.register_module()
class TinyFromCustomImports(nn.Linear):
    def __init__(self):
        super().__init__(2, 2)
"""


def test_custom_imports_registers_the_users_class(tmp_path, monkeypatch):
    (tmp_path / "my_models_for_cfg.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write(tmp_path, """\
        custom_imports: {imports: [my_models_for_cfg], allow_failed_imports: false}
        model: {type: TinyFromCustomImports}
        """)
    try:
        cfg = load_config(path)
        assert "TinyFromCustomImports" in MODELS
        assert cfg.custom_imports.imports == ["my_models_for_cfg"]
    finally:
        MODELS._module_dict.pop("TinyFromCustomImports", None)
        sys.modules.pop("my_models_for_cfg", None)


def test_custom_imports_failures(tmp_path):
    path = write(tmp_path, "custom_imports: {imports: [no_such_module_xyz]}\n")
    with pytest.raises(ConfigError, match="no_such_module_xyz.*PYTHONPATH"):
        load_config(path)
    allowed = write(tmp_path, "custom_imports: {imports: [no_such_module_xyz], "
                              "allow_failed_imports: true}\n", "allowed.yaml")
    with pytest.warns(UserWarning, match="Ignored"):
        load_config(allowed)


def test_unknown_type_says_how_to_register(tmp_path):
    with pytest.raises(KeyError, match="custom_imports"):
        MODELS.get("MyVeryOwnPoseNet")
