"""``tail_loader``: the epoch's seeded global order continued at a sample, in any layout.

The reference order is Accelerate's rule written out (``torch.randperm`` with a generator
seeded ``data_seed + epoch``); the shards are Accelerate's own ``BatchSamplerShard``.
"""

from __future__ import annotations

import pytest
import torch
from accelerate.data_loader import BatchSamplerShard, SeedableRandomSampler
from torch.utils.data import BatchSampler, DataLoader

from accelwrap.runner.data_position import layout_of, tail_loader

SAMPLES, SEED, EPOCH = 50, 7, 2


def shard_loaders(sampler, batch_size, processes, drop_last=False):
    """One plain DataLoader per rank over the same sampler, sharded as Accelerate does."""
    return [DataLoader(range(SAMPLES), batch_sampler=BatchSamplerShard(
        BatchSampler(sampler, batch_size, drop_last), processes, rank)) for rank in
        range(processes)]


@pytest.mark.parametrize("processes", [1, 2, 3])
@pytest.mark.parametrize("batch_size", [4, 8])
@pytest.mark.parametrize("start", [0, 20, 33])
def test_tail_yields_the_unseen_samples_of_the_seeded_order(processes, batch_size, start):
    order = torch.randperm(SAMPLES, generator=torch.Generator().manual_seed(SEED + EPOCH))
    sampler = SeedableRandomSampler(range(SAMPLES), data_seed=SEED)
    sampler.set_epoch(EPOCH)
    tails = [tail_loader(loader, start) for loader in shard_loaders(sampler, batch_size,
                                                                     processes)]
    per_rank = []
    for tail in tails:
        sampler.set_epoch(EPOCH)
        per_rank.append([batch.tolist() for batch in tail])
    # Accelerate's layout: global batch j goes to rank j % processes.
    interleaved = [i for step in zip(*per_rank) for batch in step for i in batch]
    left = SAMPLES - start
    assert interleaved[:left] == order[start:].tolist()
    # Every rank gets the same number of batches, the last ones padded (even_batches).
    expected = -(-(-(-left // batch_size)) // processes)
    assert [len(batches) for batches in per_rank] == [expected] * processes
    assert all(len(tail) == expected for tail in tails)


def test_layout_names_what_cannot_be_continued():
    plain = DataLoader(range(SAMPLES), batch_size=4, shuffle=True)  # torch's RandomSampler
    assert "RandomSampler" in layout_of(plain, 1).unmappable
    seeded = shard_loaders(SeedableRandomSampler(range(SAMPLES), data_seed=SEED), 4, 2)[0]
    layout = layout_of(seeded, 2)
    assert (layout.unmappable, layout.samples_per_iter, layout.epoch_samples) == (None, 8, 50)
