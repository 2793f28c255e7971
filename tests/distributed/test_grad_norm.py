"""The reported global grad norm, before and after clipping, under DDP and FSDP2 (2 gloo ranks).

Both equal the norm of the same gradients computed unsharded in one process (the 1-process
case is in ``tests/optim/optimizer/test_nonfinite.py``). The run uses
``loss_normalization='tokens'``, so the same job also checks that token normalisation under
FSDP2 gives the one-large-batch parameters.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.distributed.launch import once_per_session, read_results, torchrun

WORKER = Path(__file__).parent / "workers" / "grad_norm.py"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[dict]:
    """Both backends in one job per session (DDP first: FSDP2's CPU override changes the
    process state); per rank, ``{backend: result}``."""
    return read_results(once_per_session(tmp_path_factory, "grad_norm", lambda folder: torchrun(
        folder, WORKER, nproc=2, args=["ddp", "fsdp2"])))


@pytest.mark.distributed
@pytest.mark.parametrize("backend,kind,grad_type", [("ddp", "MULTI_CPU", "Tensor"),
                                                    ("fsdp2", "FSDP", "DTensor")])
def test_reported_norms_equal_the_unsharded_norms(runs, backend, kind, grad_type):
    results = [rank[backend] for rank in runs]
    assert [r["rank"] for r in results] == [0, 1]
    for result in results:
        assert result["distributed_type"].endswith(kind) and result["world"] == 2
        assert result["grad_types"] == [grad_type]  # FSDP2 really had sharded gradients
        ref = result["reference"]
        assert len(result["before"]) == 2  # a full window and the remainder
        assert result["before"] == pytest.approx(ref["before"], rel=1e-5)
        assert result["after"] == pytest.approx(ref["after"], rel=1e-5)
        assert all(b > a for b, a in zip(ref["before"], ref["after"]))  # clipping happened
        for got, want in zip(result["params"], ref["params"]):
            torch.testing.assert_close(torch.tensor(got), torch.tensor(want), rtol=0, atol=1e-6)
    assert results[0]["before"] == results[1]["before"]
