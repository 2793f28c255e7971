"""Worker: a shortened ``configs/gan_ring2d.yaml`` through the Runner on every rank.

Usage: ``train_gan.py WORK_DIR [key=value ...]``, launched by
tests/distributed/test_train_gan.py with ``accelerate launch --config_file
launch_configs/cpu_2proc.yaml``. Counts each member's DDP reductions with a
communication hook and reports, per rank, the world it saw, the reductions, the
optimizers' step counts, the final parameters and its process id.
"""

from __future__ import annotations

import os
import sys

from omegaconf import OmegaConf
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

from accelwrap.config import load_config
from accelwrap.runner import Runner
from tests.distributed.launch import REPO, finish_worker, write_result


def counting_hook(counter: dict[str, int], name: str):
    """A DDP communication hook that all-reduces as usual and counts finished reductions."""
    def hook(state, bucket):
        counter[name] += int(bucket.is_last())
        return default_hooks.allreduce_hook(state, bucket)
    return hook


def main(work_dir: str, overrides: list[str]) -> None:
    cfg = load_config(REPO / "configs" / "gan_ring2d.yaml", overrides)
    runner = Runner.from_cfg(OmegaConf.merge(cfg, {"work_dir": work_dir}))
    reductions = {}
    for name in ("generator", "discriminator"):
        module = getattr(runner.model, name)
        reductions[name] = 0
        if hasattr(module, "register_comm_hook"):  # DDP-wrapped
            module.register_comm_hook(None, counting_hook(reductions, name))
    model = runner.train()
    acc = runner.accelerator
    steps = {name: max((int(s["step"]) for s in wrapper.optimizer.state_dict()["state"].values()),
                       default=0)
             for name, wrapper in runner.optim_wrapper.items()}
    write_result({
        "rank": acc.process_index, "num_processes": acc.num_processes,
        "distributed_type": str(acc.distributed_type), "pid": os.getpid(),
        "ddp": {name: type(getattr(runner.model, name)).__name__ for name in reductions},
        "reductions": reductions, "optimizer_steps": steps, "epoch_length": runner.epoch_length,
        "params": {k: v.flatten().tolist() for k, v in model.state_dict().items()},
    }, rank=acc.process_index)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
    finish_worker()
