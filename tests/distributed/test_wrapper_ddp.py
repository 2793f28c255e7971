"""Optimizer wrappers in a real 2-process DDP run (torchrun, gloo, CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.distributed.launch import read_results, torchrun

WORKER = Path(__file__).parent / "workers" / "wrapper_ddp.py"


@pytest.mark.distributed
def test_accumulation_reduces_once_per_update_and_matches_data_parallel(tmp_path):
    results = read_results(torchrun(tmp_path, WORKER, nproc=2))
    assert [r["rank"] for r in results] == [0, 1]
    for result in results:
        assert result["world"] == 2 and result["distributed_type"].endswith("MULTI_CPU")
        # 10 iterations: a (counts 4) updates at 4, 8, 10; b (counts 2) at 2, 4, 6, 8, 10.
        assert result["reductions"] == {"a": 3, "b": 5, "c": 5}
        result["reference"]["c"] = result["reference"]["b"]  # c is b through Accelerate's calls
        # StepLR(step_size=3) stepped once per iteration, whatever the number of processes.
        assert result["lr"] == [pytest.approx(0.1 * 0.5 ** 3)]
        for name, params in result["params"].items():
            for got, want in zip(params, result["reference"][name]):
                torch.testing.assert_close(torch.tensor(got), torch.tensor(want),
                                           rtol=1e-5, atol=1e-6)
    assert results[0]["params"] == results[1]["params"]
