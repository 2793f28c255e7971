"""Resume on another number of processes or batch size: each sample once per epoch.

A run killed mid-epoch with N processes is resumed with N' != N (``scripts/train.py`` as
users run it, 1 process or ``accelerate launch`` with 2). The model records the index of
every sample it trains on (tests/distributed/workers/index_data.py). Expected counts come
from the dataset size, the batch size and Accelerate's sharding rule (process ``r`` of
``N`` takes batches ``r, r + N, ...`` of one seeded order), not from the runner; the
sample order is compared with an uninterrupted run in the new layout.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from tests.distributed.launch import REPO
from tests.distributed.train_cli import train

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

SAMPLES, BATCH, EPOCHS = 96, 8, 3
CONFIG = f"""
custom_imports: {{imports: [tests.distributed.workers.index_data], allow_failed_imports: false}}
model: {{type: IndexRecorder}}
train_dataloader:
  dataset: {{type: IndexedPoints, num_samples: {SAMPLES}}}
  batch_size: {BATCH}
  shuffle: true
optim_wrapper: {{optimizer: {{type: AdamW, lr: 0.01}}}}
param_scheduler:
  - {{type: LinearLR, start_factor: 0.1, by_epoch: false, begin: 0, end: 5}}
  - {{type: CosineAnnealingLR, by_epoch: true, begin: 0, eta_min: 0.0001,
     convert_to_iter_based: true}}
train_cfg: {{by_epoch: true, max_epochs: {EPOCHS}}}
default_hooks:
  checkpoint: {{interval: 2, by_epoch: false, max_keep_ckpts: 1}}
  logger: {{interval: 1, trackers: null, progress_bar: false}}
randomness: {{seed: 0}}
"""


def _lines(folder, nproc):
    """Per rank, the sample indices of each forward call, in order."""
    return [[[int(i) for i in line.split(",")] for line in
             (folder / f"rank{rank}.txt").read_text().splitlines()] for rank in range(nproc)]


def _run(tmp_path, name, nproc, work, args, kill=None):
    ids = tmp_path / f"ids_{name}"
    ids.mkdir()
    env = {"IDS_DIR": str(ids), "PYTHONPATH": str(REPO)}
    if kill:
        env["ACCELWRAP_TEST_KILL"] = kill
    proc = train(work, ["--config", str(tmp_path / "cfg.yaml"), *args], nproc=nproc, env=env,
                 check=kill is None)
    if kill:
        assert proc.returncode != 0, f"the run was not killed at {kill}"
    return _lines(ids, nproc), proc


def _global(lines):
    """The samples in the global order: iteration by iteration, rank 0 first."""
    return [i for step in zip(*lines) for batch in step for i in batch]


def _epoch_ids(lines, count):
    """The samples of the next ``count`` iterations (all ranks), removed from ``lines``."""
    seen = []
    for rank_lines in lines:
        seen += [i for line in rank_lines[:count] for i in line]
        del rank_lines[:count]
    return seen


@pytest.mark.parametrize(("before", "after", "batch", "kill_at"),
                         [(2, 1, BATCH, 2), (1, 2, BATCH, 2), (1, 1, 12, 2)])
def test_resume_on_another_world_size_sees_each_sample_once_per_epoch(
        tmp_path, before, after, batch, kill_at):
    """2 -> 1 and 1 -> 2 processes, and 1 process with batches of 8 then 12."""
    (tmp_path / "cfg.yaml").write_text(CONFIG)
    work = tmp_path / "work"
    first, _ = _run(tmp_path, "first", before, work, [], kill=f"iter:{kill_at}")
    assert [len(rank) for rank in first] == [kill_at] * before  # checkpoint iter_2, then killed
    new = [f"train_dataloader.batch_size={batch}"]
    second, proc = _run(tmp_path, "second", after, work, [*new, "--resume", "auto"])

    consumed = kill_at * BATCH * before
    left = math.ceil(math.ceil((SAMPLES - consumed) / batch) / after)  # Accelerate's rule
    per_epoch = math.ceil(math.ceil(SAMPLES / batch) / after)
    assert [len(rank) for rank in second] == [left + (EPOCHS - 1) * per_epoch] * after
    # One seeded global order per epoch, whatever the world size: the killed run's samples
    # then the resumed run's are, in order, those of an uninterrupted run in the new layout.
    reference, _ = _run(tmp_path, "reference", after, tmp_path / "reference", new)
    assert _global(first) + _global(second) == _global(reference)
    epoch0 = _epoch_ids(first, kill_at) + _epoch_ids(second, left)
    assert sorted(epoch0) == list(range(SAMPLES))
    for _ in range(EPOCHS - 1):
        assert sorted(_epoch_ids(second, per_epoch)) == list(range(SAMPLES))

    # Optimizer updates: the killed run's, the rest of epoch 0 and two full epochs.
    updates = kill_at + left + (EPOCHS - 1) * per_epoch
    final = work / "checkpoints" / (work / "checkpoints" / "latest").read_text().strip()
    state = json.loads((final / "runner_state.json").read_text())
    assert (state["iter"], state["max_iters"]) == (updates, updates)
    # All epochs done (an interval checkpoint at the last iteration is written just before
    # the epoch closes: epoch 2 with all its batches).
    assert state["epoch"] * per_epoch + state["batch_in_epoch"] == EPOCHS * per_epoch
    optimizer = torch.load(final / "optimizer.bin", weights_only=True)
    assert {float(s["step"]) for s in optimizer["state"].values()} == {float(updates)}
    # The cosine schedule (by epoch, converted to iterations) ends with the run: it stands
    # at EPOCHS epochs of the new layout's iterations; the linear warm-up counts updates.
    cosine = torch.load(final / "scheduler_1.bin", weights_only=True)
    linear = torch.load(final / "scheduler.bin", weights_only=True)
    assert (cosine["_global_step"], linear["_global_step"]) == (EPOCHS * per_epoch, updates)
    out = proc.stdout + proc.stderr
    assert "resuming on another layout" in out and f"continues at sample {consumed}" in out
    assert out.count("resuming on another layout") == 1  # every rank warns; rank 0 shows it


def test_unmappable_order_stops_naming_both_world_sizes_unless_approximate(tmp_path):
    """torch's unseeded RandomSampler (use_seedable_sampler off) has no order to continue."""
    (tmp_path / "cfg.yaml").write_text(CONFIG)
    unseeded = ["+accelerator={dataloader_config: {use_seedable_sampler: false}}"]
    work = tmp_path / "work"
    _run(tmp_path, "first", 2, work, unseeded, kill="iter:2")
    ids = tmp_path / "ids_refused"
    ids.mkdir()
    proc = train(work, ["--config", str(tmp_path / "cfg.yaml"), *unseeded, "--resume", "auto"],
                 env={"IDS_DIR": str(ids), "PYTHONPATH": str(REPO)}, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "world size 2" in out and "world size 1" in out and "RandomSampler" in out
    assert "train_dataloader.resume_data: approximate" in out
    assert (work / "checkpoints" / "latest").read_text().strip() == "iter_2"

    approximate = [*unseeded, "+train_dataloader.resume_data=approximate", "--resume", "auto"]
    second, proc = _run(tmp_path, "second", 1, work, approximate)
    # 32 samples consumed = 4 whole batches of 8 in the new layout: 8 left in epoch 0.
    assert len(second[0]) == 8 + (EPOCHS - 1) * SAMPLES // BATCH
    assert "approximate" in proc.stdout + proc.stderr


def test_a_second_resume_after_a_layout_change_keeps_the_run_length(tmp_path):
    """2 -> 1 processes, killed again after a checkpoint of the new layout whose position
    lines up with its batches, resumed again: the run still ends after EPOCHS epochs (the
    end is recomputed from the position, not from scratch), a further resume has nothing
    to do, and the layout change alone is not reported as an edited schedule."""
    (tmp_path / "cfg.yaml").write_text(CONFIG)
    work = tmp_path / "work"
    _run(tmp_path, "first", 2, work, [], kill="iter:2")  # checkpoint iter_2: 32 samples
    _, second = _run(tmp_path, "second", 1, work, ["--resume", "auto"], kill="iter:5")
    per_epoch = SAMPLES // BATCH  # 12 on 1 process
    end = 2 + (SAMPLES - 2 * 2 * BATCH) // BATCH + (EPOCHS - 1) * per_epoch  # 2 + 8 + 24
    out = second.stdout + second.stderr
    assert f"the run ends at iteration {end} (the checkpoint's run was to end at 18)" in out
    assert "epoch 1 continues at sample 32" in out
    # iteration 3 is the 5th of epoch 1 in the new layout (32 samples = 4 batches of 8 done)
    assert "Epoch(train) [1][ 5/12]" in out and "Epoch(train) [1][ 3/12]" not in out
    third, proc = _run(tmp_path, "third", 1, work, ["--resume", "auto"])  # from iter_4
    assert len(third[0]) == end - 4
    final = work / "checkpoints" / (work / "checkpoints" / "latest").read_text().strip()
    state = json.loads((final / "runner_state.json").read_text())
    assert (state["iter"], state["max_iters"]) == (end, end)
    for ran in (second, proc):
        assert "edited schedule" not in ran.stdout + ran.stderr
    again = train(work, ["--config", str(tmp_path / "cfg.yaml"), "--resume", "auto"],
                  env={"IDS_DIR": str(tmp_path), "PYTHONPATH": str(REPO)})
    assert f"already finished at iter {end}; nothing to do" in again.stdout + again.stderr
