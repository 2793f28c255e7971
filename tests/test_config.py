"""Tests for accelwrap.config: _base_ inheritance, overrides, atomic saving."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from accelwrap.config import apply_overrides, load_config, save_config
from accelwrap.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def tree(tmp_path):
    write(tmp_path / "_base_/optim.yaml", "optim:\n  type: SGD\n  lr: 0.1\n  momentum: 0.9\n")
    write(tmp_path / "_base_/sched.yaml",
          "sched:\n  - {type: LinearLR, start_factor: 0.1, end: 5}\n"
          "  - {type: MultiStepLR, milestones: [3, 6]}\n")
    write(tmp_path / "exp.yaml",
          "_base_: [_base_/optim.yaml, _base_/sched.yaml]\n"
          "optim:\n  lr: 0.2\ntrain:\n  epochs: 3\n")
    return tmp_path


def test_bases_merge_in_order_and_child_wins(tree):
    cfg = load_config(tree / "exp.yaml")
    assert cfg.optim == {"type": "SGD", "lr": 0.2, "momentum": 0.9}
    assert cfg.sched[1].milestones == [3, 6]
    assert "_base_" not in cfg


def test_delete_replaces_inherited_mapping(tree):
    write(tree / "adam.yaml",
          "_base_: exp.yaml\noptim:\n  _delete_: true\n  type: AdamW\n  lr: 0.001\n")
    cfg = load_config(tree / "adam.yaml")
    assert OmegaConf.to_container(cfg.optim) == {"type": "AdamW", "lr": 0.001}


def test_delete_with_nothing_to_replace_leaves_no_key_behind(tree):
    # a nested mapping that is new, or inside a replaced one, or in a list: _delete_
    # must not survive as a key (it would reach the optimizer as an argument).
    write(tree / "new.yaml",
          "_base_: exp.yaml\noptim:\n  _delete_: true\n  type: AdamW\n"
          "  betas_cfg: {_delete_: true, b1: 0.9}\nextra:\n  inner: {_delete_: true, x: 1}\n"
          "sched:\n  - {_delete_: true, type: ConstantLR}\n")
    cfg = OmegaConf.to_container(load_config(tree / "new.yaml"))
    assert cfg["optim"] == {"type": "AdamW", "betas_cfg": {"b1": 0.9}}
    assert cfg["extra"] == {"inner": {"x": 1}}
    assert cfg["sched"] == [{"type": "ConstantLR"}]


def test_overrides_parse_values_and_reach_list_items(tree):
    cfg = load_config(tree / "exp.yaml", ["optim.lr=0.5", "sched.1.milestones=[2, 4]",
                                          "train.epochs=7", "+train.note=hello"])
    assert cfg.optim.lr == 0.5 and isinstance(cfg.optim.lr, float)
    assert list(cfg.sched[1].milestones) == [2, 4]
    assert cfg.train.epochs == 7 and cfg.train.note == "hello"


def test_overrides_never_modify_the_input(tree):
    cfg = load_config(tree / "exp.yaml")
    apply_overrides(cfg, ["optim.lr=9"])
    assert cfg.optim.lr == 0.2


def test_every_bad_override_is_reported_at_once_with_suggestions(tree):
    with pytest.raises(ConfigError) as info:
        load_config(tree / "exp.yaml", ["optim.lrr=0.5", "trian.epochs=2", "novalue"])
    text = str(info.value)
    assert "3 problems" in text
    assert "'optim.lrr'" in text and "'lr'" in text
    assert "'trian'" in text and "'train'" in text
    assert "expected key=value" in text


def test_missing_file_and_base_cycle_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    write(tmp_path / "a.yaml", "_base_: b.yaml\n")
    write(tmp_path / "b.yaml", "_base_: a.yaml\n")
    with pytest.raises(ConfigError, match="inheritance cycle"):
        load_config(tmp_path / "a.yaml")


def test_missing_base_names_the_file_that_asked(tmp_path):
    write(tmp_path / "a.yaml", "_base_: missing.yaml\n")
    with pytest.raises(ConfigError, match=r"missing.yaml.*named by .*a.yaml"):
        load_config(tmp_path / "a.yaml")


def test_invalid_yaml_and_non_mapping_top_level(tmp_path):
    write(tmp_path / "bad.yaml", "a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    write(tmp_path / "list.yaml", "- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(tmp_path / "list.yaml")


def test_save_config_round_trips_and_leaves_no_temp_files(tree, tmp_path):
    cfg = load_config(tree / "exp.yaml")
    out = save_config(cfg, tmp_path / "work" / "config.yaml")
    assert load_config(out) == cfg
    assert [p.name for p in out.parent.iterdir()] == ["config.yaml"]


@pytest.mark.parametrize("override, expected", [
    ("param_scheduler.5.gamma=1", "no 'param_scheduler.5': param_scheduler is a list of 2 "
                                  "item(s) (indices 0 to 1, or -1 for the last)"),
    ("+param_scheduler.5.gamma=1", "no 'param_scheduler.5': param_scheduler is a list of 2"),
    ("optim.lr.x=1", "no 'optim.lr.x': optim.lr is a value (0.1), not a mapping"),
    ("+optim.lr.x=1", "no 'optim.lr.x': optim.lr is a value (0.1), not a mapping"),
])
def test_an_override_under_a_list_or_a_value_says_what_is_there(override, expected):
    cfg = OmegaConf.create({"param_scheduler": [{"type": "A"}, {"type": "B"}],
                            "optim": {"lr": 0.1}})
    with pytest.raises(ConfigError) as err:
        apply_overrides(cfg, [override])
    assert expected in str(err.value)
