"""``accelwrap test CONFIG --checkpoint PATH``: MMEngine's TestLoop, one pass, one line.

The test set here is the validation split, so the test metrics must equal the last
validation's (same weights, same data, same ``val_step``), and with an ``EMAHook`` the
checkpoint's averaged weights are the ones tested (validation used them too).
"""

from __future__ import annotations

import logging

import pytest

from accelwrap.cli import main
from tests.runner.helpers import QUIET, REPO, records, run

TEST_SET = "+test_dataloader={dataset: {type: DigitsDataset, split: val}, batch_size: 128}"
EMA_HOOK = "+custom_hooks=[{type: EMAHook, momentum: 0.01}]"


def _test(work_dir, caplog, *overrides):
    checkpoint = work_dir / "checkpoints" / "epoch_2"
    with caplog.at_level(logging.INFO, logger="accelwrap"):
        status = main(["test", str(REPO / "configs" / "digits_sgd_multistep.yaml"),
                       "--checkpoint", str(checkpoint), "--work-dir", str(work_dir),
                       *QUIET, TEST_SET, *overrides])
    return status, [r.getMessage() for r in caplog.records
                    if r.getMessage().startswith("Epoch(test)")]


@pytest.mark.parametrize("hooks", [(), (EMA_HOOK,)], ids=["plain", "ema"])
def test_the_test_metrics_are_the_last_validations(tmp_path, caplog, hooks):
    run("digits_sgd_multistep", tmp_path, "train_cfg.max_epochs=2", *hooks)
    last = records(tmp_path, "val")[-1]
    status, lines = _test(tmp_path, caplog, *hooks)
    assert status == 0
    assert lines == [f"Epoch(test) [3/3]  accuracy: {last['accuracy']:.4f}  "
                     f"loss: {last['loss']:.4f}"]


def test_no_test_dataloader_is_one_clear_error(tmp_path, capsys):
    run("digits_sgd_multistep", tmp_path, "train_cfg.max_epochs=2")
    assert main(["test", str(REPO / "configs" / "digits_sgd_multistep.yaml"), "--checkpoint",
                 str(tmp_path / "checkpoints" / "epoch_2"), "--work-dir", str(tmp_path),
                 *QUIET]) == 1
    assert "error: test_dataloader: required to test" in capsys.readouterr().err


def test_a_test_cfg_of_another_loop_is_a_config_error(tmp_path, capsys):
    assert main(["check", str(REPO / "configs" / "digits_sgd_multistep.yaml"),
                 "+test_cfg={type: ValLoop}"]) == 1
    assert "test_cfg.type: only 'TestLoop' is supported, got 'ValLoop'" in capsys.readouterr().err
