"""Resume with a longer run: the edited schedule from the first resumed iteration, and said so."""

from __future__ import annotations

import json
import logging

import pytest

from accelwrap.tools.schedule import simulate
from tests.runner.helpers import config, records, run

# The warm-up ends before the cosine begins; every param group's lr is logged.
SHORT = ["train_cfg.max_epochs=3", "+default_hooks.logger.per_group=true"]


@pytest.mark.slow
def test_extended_run_logs_the_simulated_lr_at_every_iteration(tmp_path, caplog):
    run("digits_adamw_cosine", tmp_path, *SHORT)
    state = json.loads(next((tmp_path / "checkpoints").glob("epoch_3/runner_state.json"))
                       .read_text())
    assert [s["type"] for s in state["schedulers"]] == ["LinearLR", "CosineAnnealingLR"]

    longer = [*SHORT[1:], "train_cfg.max_epochs=5", "+resume=true"]
    with caplog.at_level(logging.WARNING, logger="accelwrap"):
        runner = run("digits_adamw_cosine", tmp_path, *longer)
    edits = [r.getMessage() for r in caplog.records if "edited schedule" in r.getMessage()]
    assert len(edits) == 1 and "CosineAnnealingLR: end" in edits[0], edits
    length = runner.epoch_length
    assert f"end {3 * length} -> {5 * length}" in edits[0]
    assert f"T_max {2 * length} -> {4 * length}" in edits[0]

    trace = simulate(config("digits_adamw_cosine", tmp_path, *longer))
    rows = {r["iter"]: r for r in records(tmp_path, "train")}
    assert sorted(rows) == list(range(1, 5 * length + 1))
    keys = [key for key in trace.columns if key == "base_lr" or key.startswith("lr")]
    assert keys and all(key in rows[1] for key in keys)
    for key in keys:  # every resumed iteration, from the first
        logged = [rows[i][key] for i in range(3 * length + 1, 5 * length + 1)]
        expected = trace.columns[key][3 * length:]
        assert logged == pytest.approx(expected, rel=1e-12), key
