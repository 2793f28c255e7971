"""ZeroRedundancyOptimizer (optimizer_type as a string) in a real 2-process gloo run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.distributed.launch import read_results, torchrun

WORKER = Path(__file__).parent / "workers" / "zero_optimizer.py"
N_PARAMS = 6  # three Linear layers, weight + bias each


@pytest.mark.distributed
def test_zero_matches_a_plain_reference_and_agrees_across_ranks(tmp_path):
    results = read_results(torchrun(tmp_path, WORKER, nproc=2))
    assert [r["rank"] for r in results] == [0, 1]
    for case in ("sgd", "adamw_groups"):
        for result in results:
            assert result["world"] == 2 and result["distributed_type"].endswith("MULTI_CPU")
            got = result[case]
            for param, want in zip(got["params"], got["reference"]):
                torch.testing.assert_close(torch.tensor(param), torch.tensor(want),
                                           rtol=1e-5, atol=1e-6)
        assert results[0][case]["params"] == results[1][case]["params"]
        # the state is sharded: each rank holds part of it; state_dict() gathers all of it
        local = [r[case]["local_state"] for r in results]
        assert sum(local) == N_PARAMS and all(0 < n < N_PARAMS for n in local)
        assert [r[case]["full_state"] for r in results] == [N_PARAMS, N_PARAMS]
    assert results[0]["adamw_groups"]["groups"] == N_PARAMS  # one group per parameter
