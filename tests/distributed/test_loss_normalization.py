"""Token normalisation and the non-finite policy on a real 2-process DDP run (torchrun, gloo)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.distributed.launch import once_per_session, read_results, torchrun

WORKER = Path(__file__).parent / "workers" / "loss_normalization_ddp.py"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = read_results(once_per_session(tmp_path_factory, "loss_normalization", lambda folder:
                                        torchrun(folder, WORKER, nproc=2)))
    assert [r["rank"] for r in out] == [0, 1]
    assert all(r["distributed_type"].endswith("MULTI_CPU") and r["world"] == 2 for r in out)
    return out


def _close(got, want) -> None:
    for a, b in zip(got, want):
        torch.testing.assert_close(torch.tensor(a), torch.tensor(b), rtol=0, atol=1e-6)


@pytest.mark.distributed
def test_uneven_tokens_on_two_ranks_equal_one_full_batch_step_per_window(results):
    rank0, rank1 = results
    assert rank0["tokens"] != rank1["tokens"] and len(set(rank0["tokens"])) > 3
    for result in results:
        _close(result["params"], result["reference"])
        # one all-reduce of the window's token count per update (3 updates), nothing else
        assert result["reductions"] == 3
    assert rank0["params"] == rank1["params"]


@pytest.mark.distributed
@pytest.mark.parametrize("check", ["grad", "loss"])
def test_a_nan_on_rank_1_only_makes_both_ranks_skip_the_same_update(results, check):
    rank0, rank1 = (r["skips"][check] for r in results)
    assert rank0["nonfinite_skips"] == rank1["nonfinite_skips"] == 1
    assert rank0["updates"] == rank1["updates"] == 3
    # 'loss': the loss rides in the tokens' all-reduce, still one collective per update
    assert rank0["reductions"] == rank1["reductions"] == 3
    assert rank0["params"] == rank1["params"]
    _close(rank0["params"], results[0]["reference_skip"])  # as if window 1 never happened


@pytest.mark.distributed
def test_a_loss_spike_on_rank_1_only_makes_both_ranks_skip(results):
    rank0, rank1 = (r["spike"] for r in results)
    assert rank0["spike_skips"] == rank1["spike_skips"] == 1
    assert rank0["spike_losses"] == rank1["spike_losses"]  # the global loss, on both ranks
