"""Worker: train the digits classifier under FSDP2 on CPU (gloo) with sharded checkpoints.

TEST-ONLY WORKAROUND (see shared/ACCELERATE_NOTES.md): Accelerate ignores its FSDP
plugin on CPU and silently gives DDP. Setting the CPU PartialState's distributed_type
to MULTI_GPU before creating the Accelerator makes it build FSDP2; the worker asserts
DistributedType.FSDP afterwards, so an Accelerate upgrade that breaks this fails loudly.

Usage: python -m torch.distributed.run --standalone --nproc_per_node N \
    tests/distributed/train_fsdp_worker.py WORK_DIR MAX_ITERS RESUME
"""

from __future__ import annotations

import sys

from accelerate.state import PartialState
from accelerate.utils import (
    DataLoaderConfiguration,
    DistributedType,
    FullyShardedDataParallelPlugin,
)

from accelwrap.optim import make_accelerator
from accelwrap.runner import Runner
from tests.distributed.launch import finish_worker, write_result


def make_fsdp_accelerator():
    """An FSDP2 Accelerator with SHARDED_STATE_DICT on CPU (test-only override)."""
    state = PartialState(cpu=True)
    state.distributed_type = DistributedType.MULTI_GPU
    plugin = FullyShardedDataParallelPlugin(fsdp_version=2, state_dict_type="SHARDED_STATE_DICT",
                                            reshard_after_forward=True)
    accelerator = make_accelerator(cpu=True, fsdp_plugin=plugin,
                                   dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True))
    if accelerator.distributed_type != DistributedType.FSDP:
        raise AssertionError(f"expected DistributedType.FSDP, got {accelerator.distributed_type}: "
                             "the CPU FSDP test workaround no longer works with this Accelerate")
    return accelerator


def main() -> None:
    work_dir, max_iters, resume = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    accelerator = make_fsdp_accelerator()
    runner = Runner(
        model=dict(type="MLPClassifier", hidden_dims=[32]),
        work_dir=work_dir,
        train_dataloader=dict(dataset=dict(type="DigitsDataset", split="train"), batch_size=32),
        optim_wrapper=dict(optimizer=dict(type="AdamW", lr=0.01)),
        param_scheduler=[dict(type="LinearLR", start_factor=0.1, by_epoch=False, end=10)],
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(interval=4, by_epoch=False),
                           logger=dict(progress_bar=False, trackers=[])),
        resume=resume if resume != "none" else False,
        accelerator=accelerator,
    )
    model = runner.train()
    full = accelerator.get_state_dict(model)
    write_result({"distributed_type": str(accelerator.distributed_type),
                  "num_processes": accelerator.num_processes,
                  "resumed_from": str(runner.resume_from),
                  "weights": {k: v.flatten().tolist() for k, v in full.items()}})


if __name__ == "__main__":
    main()
    # Even after the group is destroyed, gloo's FSDP threads occasionally aborted the
    # interpreter's teardown (about one run in five).
    finish_worker()
