"""``default_hooks.checkpoint.save_best`` / ``rule``: MMEngine's best checkpoint, on disk.

The folder name is MMEngine's ``best_{metric}_{filename_tmpl}`` without ``.pth``; the
rule's keys are read from MMEngine's ``checkpoint_hook.py`` (``mmengine.hooks`` needs
OpenCV, so the file is parsed rather than imported).
"""

from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from accelwrap.errors import ConfigError
from accelwrap.runner import Runner
from accelwrap.runner.best import GREATER_KEYS, LESS_KEYS, infer_rule
from tests.runner.helpers import config, records, run

BEST = ("default_hooks.checkpoint.max_keep_ckpts=1",)


def folders(work_dir: Path) -> list[str]:
    return sorted(p.name for p in (work_dir / "checkpoints").iterdir() if p.is_dir())


def best_state(work_dir: Path) -> dict:
    latest = (work_dir / "checkpoints" / "latest").read_text().strip()
    return json.loads((work_dir / "checkpoints" / latest / "runner_state.json").read_text())["best"]


@pytest.mark.parametrize("save_best, metric, pick", [("auto", "accuracy", max),
                                                     ("loss", "loss", min)])
def test_the_best_epoch_is_kept_besides_the_last(tmp_path, save_best, metric, pick):
    run("digits_sgd_multistep", tmp_path, "train_cfg.max_epochs=3", *BEST,
        f"+default_hooks.checkpoint.save_best={save_best}")
    vals = records(tmp_path, "val")
    best = pick(vals, key=lambda r: r[metric])
    name = f"best_{metric}_epoch_{best['epoch']}"
    assert folders(tmp_path) == sorted([name, "epoch_3"])  # one best, never pruned
    assert best_state(tmp_path)["score"] == pytest.approx(best[metric])
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "epoch_3"
    assert json.loads((tmp_path / "checkpoints" / name / "runner_state.json").read_text())[
        "epoch"] == best["epoch"]


def test_an_iteration_run_names_the_best_by_iteration(tmp_path):
    run("digits_amp_bf16_accum", tmp_path, "train_cfg.max_iters=160", "train_cfg.val_interval=40",
        "default_hooks.checkpoint.interval=40", *BEST,
        "+default_hooks.checkpoint.save_best=accuracy")
    best = max(records(tmp_path, "val"), key=lambda r: r["accuracy"])
    assert f"best_accuracy_iter_{best['iter']}" in folders(tmp_path)


def test_resume_keeps_the_best_value(tmp_path):
    args = (*BEST, "+default_hooks.checkpoint.save_best=accuracy")
    run("digits_sgd_multistep", tmp_path / "whole", "train_cfg.max_epochs=4", *args)
    run("digits_sgd_multistep", tmp_path / "cut", "train_cfg.max_epochs=2", *args)
    cfg = config("digits_sgd_multistep", tmp_path / "cut", "train_cfg.max_epochs=4", *args)
    Runner.from_cfg(OmegaConf.merge(cfg, {"resume": "auto"})).train()
    assert best_state(tmp_path / "cut") == best_state(tmp_path / "whole")
    assert folders(tmp_path / "cut") == folders(tmp_path / "whole")


def test_an_unknown_metric_names_the_available_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"save_best: 'acc' is not a validation metric; "
                                          r"the validation gives \['accuracy', 'loss'\]"):
        run("digits_sgd_multistep", tmp_path, "train_cfg.max_epochs=1",
            "+default_hooks.checkpoint.save_best=acc")


@pytest.mark.parametrize("override, message", [
    ("+default_hooks.checkpoint.rule=bigger", "rule: expected one of ['greater', 'less'], "
                                               "got 'bigger'"),
    ("+default_hooks.checkpoint.save_best=f1", "cannot infer 'greater' or 'less' for "
                                                "save_best='f1'"),
])
def test_bad_settings_are_config_errors(tmp_path, override, message):
    with pytest.raises(ConfigError) as err:
        Runner.from_cfg(config("digits_sgd_multistep", tmp_path, override))
    assert message in str(err.value)


def mmengine_keys() -> dict[str, list[str]]:
    spec = importlib.util.find_spec("mmengine")
    source = Path(spec.origin).parent / "hooks" / "checkpoint_hook.py"
    found = {}
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) \
                and node.targets[0].id in ("_default_greater_keys", "_default_less_keys"):
            found[node.targets[0].id] = ast.literal_eval(node.value)
    return found


def test_the_rule_keys_are_mmengines():
    keys = mmengine_keys()
    assert list(GREATER_KEYS) == keys["_default_greater_keys"]
    assert list(LESS_KEYS) == keys["_default_less_keys"]


@pytest.mark.parametrize("metric, rule", [("accuracy", "greater"), ("loss", "less"),
                                          ("val/mAP", "greater"), ("top1", "greater"),
                                          ("Loss_total", "less"), ("AACC", "greater"),
                                          ("mode_dist", None)])
def test_the_rule_is_inferred_as_mmengine_does(metric, rule):
    if rule is None:
        with pytest.raises(ValueError, match="cannot infer"):
            infer_rule(metric)
    else:
        assert infer_rule(metric) == rule
