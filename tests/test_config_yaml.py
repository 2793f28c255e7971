"""YAML as an MMEngine user writes it: Python's number spellings, no silent duplicate keys.

The reference for a number is Python itself: an MMEngine config is Python, so ``1e-4``
there is ``float('1e-4')``, and its YAML transcription must read the same.
"""

from pathlib import Path

import pytest

from accelwrap.config import apply_overrides, load_config, parse_yaml
from accelwrap.errors import ConfigError
from accelwrap.runner.train_cfg import parse_train_cfg
from accelwrap.tools.check import run_check

FLOATS = ["1e-4", "2E-5", "5e-4", "1e4", "-3e-2", "+1.5e-3", "1.e-3", ".5e1", "6.0e+2", "1_0e-1"]
NOT_NUMBERS = ["1e4x", "e5", "1e", "1.2.3", "1e-4e"]


@pytest.mark.parametrize("text", FLOATS)
def test_exponent_floats_read_as_python_reads_them(text):
    value = parse_yaml(f"lr: {text}")["lr"]
    assert type(value) is float and value == float(text.replace("_", ""))


@pytest.mark.parametrize("text", NOT_NUMBERS)
def test_words_that_only_look_numeric_stay_strings(text):
    assert parse_yaml(f"v: {text}")["v"] == text


def test_ints_bools_and_quoted_values_keep_their_types():
    cfg = parse_yaml("a: 10\nb: true\nc: '1e-4'\nd: 0.1\ne: null")
    assert cfg == {"a": 10, "b": True, "c": "1e-4", "d": 0.1, "e": None}
    assert type(cfg["a"]) is int


@pytest.mark.parametrize("word", ["on", "off", "yes", "no", "y", "n", "On", "YES"])
def test_yaml_1_1_boolean_words_stay_strings_as_in_yaml_1_2(word):
    # A scheduler's `on: updates` must be the key 'on', not True.
    assert parse_yaml(f"{word}: {word}") == {word: word}


@pytest.mark.parametrize("text,value", [("true", True), ("False", False), ("TRUE", True)])
def test_yaml_1_2_booleans_are_booleans(text, value):
    assert parse_yaml(f"v: {text}")["v"] is value


def test_by_epoch_yes_is_refused_by_name(tmp_path):
    cfg = parse_yaml("by_epoch: yes\nmax_epochs: 2")
    with pytest.raises(ConfigError, match="by_epoch") as err:
        parse_train_cfg(cfg)
    assert "'yes'" in str(err.value)


def test_a_config_file_and_an_override_read_1e_4_as_a_float(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("optim:\n  lr: 1e-4\n  weight_decay: 5e-2\n")
    cfg = load_config(path, ["optim.weight_decay=1e-3"])
    assert (cfg.optim.lr, cfg.optim.weight_decay) == (1e-4, 1e-3)
    assert type(apply_overrides(cfg, ["optim.lr=3E-4"]).optim.lr) is float


def test_a_repeated_key_is_an_error_naming_the_key_the_file_and_both_lines(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("optim:\n  lr: 0.1\n  momentum: 0.9\n  lr: 0.2\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "duplicate key 'lr'" in message and "line 2" in message and "line 4" in message
    assert str(path) in message


def test_the_same_key_in_two_mappings_is_not_a_duplicate():
    assert parse_yaml("a: {lr: 1}\nb: {lr: 2}") == {"a": {"lr": 1}, "b": {"lr": 2}}


def test_check_accepts_an_exponent_learning_rate(capsys):
    config = Path(__file__).resolve().parents[1] / "configs" / "digits_adamw_cosine.yaml"
    assert run_check(str(config), ["optim_wrapper.optimizer.lr=1e-3"]) == 0, \
        capsys.readouterr().err
