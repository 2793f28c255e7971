"""Schedulers through accelerator.save_state / load_state in real 1- and 2-process runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.distributed.launch import read_results, torchrun

WORKER = Path(__file__).parent / "workers" / "sched_checkpoint.py"
SAVE_AFTER, EPOCH_LENGTH = 2, 5


@pytest.mark.distributed
@pytest.mark.slow
def test_checkpointed_schedule_resumes_and_ignores_the_process_count(tmp_path):
    single = read_results(torchrun(tmp_path / "one", WORKER, nproc=1,
                                   args=[str(tmp_path / "ckpt1")]))
    double = read_results(torchrun(tmp_path / "two", WORKER, nproc=2,
                                   args=[str(tmp_path / "ckpt2")]))
    assert [r["world"] for r in single] == [1] and [r["world"] for r in double] == [2, 2]
    reference = single[0]["full"]
    assert len(reference) == 20 and len({row[0][0] for row in reference}) > 10
    assert "scheduler.bin" in single[0]["files"] and "scheduler_5.bin" in double[0]["files"]
    for result in single + double:
        # The LR at iteration i does not depend on the number of processes ...
        assert result["full"] == reference
        # ... and a run resumed from the checkpoint continues exactly.
        assert result["resumed"] == reference[SAVE_AFTER * EPOCH_LENGTH:]
