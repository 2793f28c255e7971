"""Every shipped config builds and trains a shortened run on CPU (overrides shorten it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.runner.helpers import REPO, records, run

SHORTEN = {
    "digits_sgd_multistep": ["train_cfg.max_epochs=2"],
    "digits_adamw_cosine": ["train_cfg.max_epochs=2"],
    "digits_amp_bf16_accum": ["train_cfg.max_iters=40", "train_cfg.val_interval=20",
                              "default_hooks.checkpoint.interval=20", "param_scheduler.0.end=8",
                              "param_scheduler.1.begin=8"],
    "digits_plateau": ["train_cfg.max_epochs=2"],
    "seq_gru_tokens": ["train_cfg.max_iters=80", "train_cfg.val_interval=40",
                       "default_hooks.checkpoint.interval=40", "default_hooks.logger.interval=1"],
    "gan_ring2d": ["train_cfg.max_epochs=2", "train_cfg.val_interval=1",
                   "param_scheduler.generator.1.begin=1", "default_hooks.checkpoint.interval=1"],
}
SHIPPED = sorted(p.stem for p in (REPO / "configs").glob("*.yaml") if not p.stem.startswith("_"))


def test_every_shipped_config_has_a_short_version():
    assert SHIPPED == sorted(SHORTEN)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_config_trains(name, tmp_path: Path):
    runner = run(name, tmp_path, *SHORTEN[name])
    train, val = records(tmp_path, "train"), records(tmp_path, "val")
    assert len(train) == runner.max_iters and train[-1]["iter"] == runner.max_iters
    assert val and all(v == v for v in val[-1].values() if isinstance(v, float))
    assert (tmp_path / "checkpoints" / "latest").is_file()
