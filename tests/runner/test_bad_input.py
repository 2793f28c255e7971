"""Bad input gives one clear error, and nothing in the work dir is overwritten or lost."""

from __future__ import annotations

import pytest

from accelwrap.errors import ConfigError
from accelwrap.runner import Runner
from tests.distributed.train_cli import train, tree
from tests.runner.helpers import config, run

SHORT = ("train_cfg.max_epochs=1", "train_dataloader.batch_size=256")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A work dir holding a finished short run (config, log, checkpoint)."""
    work = tmp_path_factory.mktemp("trained")
    run("digits_sgd_multistep", work, *SHORT)
    return work


def test_unknown_keys_are_listed_with_suggestions(tmp_path):
    cfg = config("digits_sgd_multistep", tmp_path, "+optim_wraper={}",
                 "+train_dataloader.batchsize=3")
    with pytest.raises(ConfigError) as err:
        Runner.from_cfg(cfg)
    text = str(err.value)
    assert "optim_wraper: unknown top-level key; did you mean 'optim_wrapper'" in text
    assert "batchsize" in text and "'batch_size'" in text


def test_missing_sections_are_all_named(tmp_path):
    with pytest.raises(ConfigError) as err:
        Runner.from_cfg({"work_dir": str(tmp_path), "model": {"type": "MLPClassifier"}})
    assert {"train_dataloader: required section is missing",
            "optim_wrapper: required section is missing",
            "train_cfg: required section is missing"} <= set(err.value.problems)


def test_unregistered_types_are_named_with_close_matches(tmp_path):
    cfg = config("digits_sgd_multistep", tmp_path, "model.type=MLPClasifier",
                 "optim_wrapper.optimizer.type=SDG", "train_dataloader.dataset.type=Digits")
    with pytest.raises(ConfigError) as err:
        Runner.from_cfg(cfg)
    text = str(err.value)
    assert "'MLPClasifier' is not registered in MODELS; did you mean 'MLPClassifier'" in text
    assert "did you mean 'SGD'" in text and "'Digits'" in text and "DigitsDataset" in text
    assert not list(tmp_path.rglob("scalars.jsonl"))


def test_nonexistent_resume_path_fails_before_touching_the_work_dir(trained, tmp_path):
    before = tree(trained)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Runner.from_cfg(config("digits_sgd_multistep", trained, *SHORT, f"+resume={tmp_path}/nope"))
    assert tree(trained) == before


def test_checkpoint_of_a_different_model_is_refused_and_nothing_changes(trained):
    before = tree(trained)
    runner = Runner.from_cfg(config("digits_sgd_multistep", trained, *SHORT,
                                    "model.hidden_dims=[32]", "+resume=auto"))
    with pytest.raises(ValueError, match=r"different model: shape mismatch: net.0.weight: "
                                         r"checkpoint \[128, 64\] vs model \[32, 64\]"):
        runner.train()
    assert tree(trained) == before


def test_train_py_reports_a_clear_error_and_exit_status(trained, tmp_path):
    before = tree(trained)
    proc = train(trained, ["--config", "configs/digits_sgd_multistep.yaml", "--resume",
                           str(tmp_path / "missing")], check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: resume=") and "Traceback" not in proc.stderr
    assert tree(trained) == before


@pytest.mark.parametrize("key, value, minimum", [("max_epochs", 0, 1), ("val_interval", 0, 1),
                                                 ("val_begin", -1, 0)])
def test_train_cfg_counts_name_key_value_and_minimum(key, value, minimum):
    from accelwrap.runner.train_cfg import parse_train_cfg

    cfg = {"by_epoch": True, "max_epochs": 2, key: value}
    with pytest.raises(ValueError,
                       match=rf"train_cfg\.{key}: expected an integer >= {minimum}, got {value}"):
        parse_train_cfg(cfg)
    assert getattr(parse_train_cfg({**cfg, key: minimum}), key) == minimum
