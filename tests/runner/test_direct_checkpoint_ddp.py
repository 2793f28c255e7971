"""Direct checkpoints of a 2-process run with a sharded optimizer (ZeroRedundancyOptimizer).

``ZeroRedundancyOptimizer.state_dict`` gathers across ranks, so every rank must take
part in a save even though only rank 0 writes ``state.pt``. Resuming from the first
epoch's checkpoint ends where the uninterrupted run ends, bit for bit.
"""

from __future__ import annotations

import pytest
import torch

from tests.distributed.train_cli import records, train

ARGS = ["--config", "configs/digits_sgd_multistep.yaml", "train_cfg.max_epochs=2",
        "train_dataloader.batch_size=64", "default_hooks.logger.progress_bar=false",
        "default_hooks.logger.trackers=null", "optim_wrapper.optimizer.type=ZeroRedundancyOptimizer",
        "+optim_wrapper.optimizer.optimizer_type=SGD"]


@pytest.mark.slow
@pytest.mark.distributed
def test_zero_optimizer_two_processes_direct_checkpoint_resumes_exactly(tmp_path):
    reference = tmp_path / "reference"
    train(reference, ARGS, nproc=2)
    epoch_1 = reference / "checkpoints" / "epoch_1"
    assert sorted(p.name for p in epoch_1.iterdir()) == ["rng_1.pt", "runner_state.json", "state.pt"]
    state = torch.load(epoch_1 / "state.pt", weights_only=True)
    # The full (gathered) optimizer state: a momentum buffer for every parameter.
    assert len(state["optimizers"][0]["state"]) == len(state["models"][0])
    torch.load(epoch_1 / "rng_1.pt", weights_only=True)

    resumed = tmp_path / "resumed"
    train(resumed, ARGS + ["--resume", str(epoch_1)], nproc=2)
    want = torch.load(reference / "checkpoints" / "epoch_2" / "state.pt", weights_only=True)
    got = torch.load(resumed / "checkpoints" / "epoch_2" / "state.pt", weights_only=True)
    for key, value in want["models"][0].items():
        assert torch.equal(got["models"][0][key], value), key
    for index, saved in want["optimizers"][0]["state"].items():
        assert torch.equal(got["optimizers"][0]["state"][index]["momentum_buffer"], saved["momentum_buffer"])
    # Records are 0-based by epoch: the resumed run logged the second epoch only.
    second_epoch = [r for r in records(reference, "train") if r["epoch"] == 1]
    assert second_epoch and records(resumed, "train") == second_epoch
