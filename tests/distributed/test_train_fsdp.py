"""FSDP2 on CPU (gloo): sharded checkpoints, exact sharded resume, 2-rank shards in 1 rank, merge.

Uses the test-only workaround in ``train_fsdp_worker.py`` (CPU PartialState marked
MULTI_GPU so Accelerate builds FSDP2); the worker asserts ``DistributedType.FSDP``.
"""

from __future__ import annotations

import pytest
from safetensors.torch import load_file

from accelwrap.runner import merge_sharded
from tests.distributed.launch import read_results, torchrun

WORKER = "tests/distributed/train_fsdp_worker.py"


def _run(tmp_path, name, work, iters, resume, nproc=2, kill=None):
    env = {"ACCELWRAP_TEST_KILL": kill} if kill else None
    out = torchrun(tmp_path / name, WORKER, nproc=nproc, args=[str(work), str(iters), resume],
                   env=env, check=kill is None)
    return read_results(out)


@pytest.mark.slow
@pytest.mark.distributed
def test_fsdp_sharded_checkpoints_resume_exactly_and_reshard(tmp_path):
    reference = _run(tmp_path, "ref", tmp_path / "ref_work", 12, "none")
    assert reference[0]["distributed_type"] == "DistributedType.FSDP"
    shards = tmp_path / "ref_work" / "checkpoints" / "iter_12"
    assert sorted(p.name for p in (shards / "pytorch_model_fsdp_0").iterdir()) == [
        ".metadata", "__0_0.distcp", "__1_0.distcp"]
    assert (shards / "optimizer_0").is_dir() and not (shards / "model.safetensors").exists()

    work = tmp_path / "work"
    _run(tmp_path, "killed", work, 12, "none", kill="iter:6")
    assert (work / "checkpoints" / "latest").read_text().strip() == "iter_4"
    resumed = _run(tmp_path, "resumed", work, 12, "auto")
    assert resumed[0]["resumed_from"].endswith("iter_4")
    assert resumed[0]["weights"] == reference[0]["weights"]

    merged = load_file(merge_sharded(shards, tmp_path / "merged"))
    assert {k: v.flatten().tolist() for k, v in merged.items()} == reference[0]["weights"]

    # The 2-rank shards of iteration 8 load in a single process (resharded by DCP).
    single = _run(tmp_path, "single", work, 8, str(work / "checkpoints" / "iter_8"), nproc=1)
    middle = load_file(merge_sharded(work / "checkpoints" / "iter_8", tmp_path / "merged8"))
    assert single[0]["num_processes"] == 1
    assert single[0]["weights"] == {k: v.flatten().tolist() for k, v in middle.items()}
