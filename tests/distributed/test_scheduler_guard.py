"""A scheduler refuses Accelerate's once-per-process stepping in a real 2-process run."""

from pathlib import Path

import pytest

from tests.distributed.launch import once_per_session, read_results, torchrun

WORKER = Path(__file__).parent / "workers" / "sched_multistep.py"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[dict]:
    """Both modes in one 2-process job per session; per rank, ``{mode: result}``."""
    return read_results(once_per_session(tmp_path_factory, "sched_multistep", lambda folder:
                                         torchrun(folder, WORKER, nproc=2,
                                                  args=["default", "safe"])))


@pytest.mark.distributed
def test_multistepping_accelerated_scheduler_is_refused_before_changing_the_lr(runs):
    results = [rank["default"] for rank in runs]
    assert [r["world"] for r in results] == [2, 2]
    for result in results:
        assert "step it 2 times per call" in result["error"]
        assert "step_scheduler_with_optimizer=False" in result["error"]
        assert result["lr"] == 1.0


@pytest.mark.distributed
def test_once_per_call_stepping_is_accepted(runs):
    results = [rank["safe"] for rank in runs]
    assert [r["world"] for r in results] == [2, 2]
    for result in results:
        assert result["error"] is None and result["lr"] == 0.5
