"""Worker: wrappers (accumulative_counts 4 and 2) prepared together on a 2-process DDP run.

``c`` repeats ``b`` with the torch shortcuts switched off (every call goes through
Accelerate), so both paths are checked against the same reference.

Counts DDP reductions with a communication hook, trains on this rank's shard, and
computes a plain-PyTorch data-parallel reference (the full batch in one process) that
every rank must match. Run by tests/distributed/test_wrapper_ddp.py under torchrun.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

from accelwrap.optim import OptimWrapper, OptimWrapperDict, make_accelerator, prepare
from tests.distributed.launch import finish_worker, write_result

STEPS, BATCH, MAX_NORM = 10, 4, 0.3
COUNTS = {"a": 4, "b": 2}


class SlowOptimWrapper(OptimWrapper):
    fast_path = False


def make_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))


def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def make_scheduler(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5)


def global_batches(world: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    return [(torch.randn(world * BATCH, 4, generator=gen),
             torch.randn(world * BATCH, 2, generator=gen))
            for _ in range(STEPS)]


def counting_hook(counter: dict, name: str):
    def hook(state, bucket):
        counter[name] += int(bucket.is_last())
        return default_hooks.allreduce_hook(None, bucket)
    return hook


def reference(data) -> dict[str, list[list[float]]]:
    """Plain PyTorch: full batch, loss divided by the window size, step at window ends."""
    out = {}
    for seed, (name, counts) in enumerate(COUNTS.items()):
        model = make_model(seed)
        optimizer = make_optimizer(model)
        scheduler = make_scheduler(optimizer) if name == "a" else None
        last_full = STEPS - STEPS % counts
        for i, (x, y) in enumerate(data):
            window = counts if i < last_full else STEPS - last_full
            (F.mse_loss(model(x), y) / window).backward()
            if (i + 1) % counts == 0 or i + 1 == STEPS:
                if name == "b":
                    torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_NORM)
                optimizer.step()
                optimizer.zero_grad()
            if scheduler is not None:
                scheduler.step()
        out[name] = [p.detach().flatten().tolist() for p in model.parameters()]
    return out


def main() -> None:
    accelerator = make_accelerator()
    rank, world = accelerator.process_index, accelerator.num_processes
    models = {"a": make_model(0), "b": make_model(1), "c": make_model(1)}
    wrappers = OptimWrapperDict(
        a=OptimWrapper(make_optimizer(models["a"]), accumulative_counts=COUNTS["a"]),
        b=OptimWrapper(make_optimizer(models["b"]), accumulative_counts=COUNTS["b"],
                       clip_grad=dict(max_norm=MAX_NORM)),
        c=SlowOptimWrapper(make_optimizer(models["c"]), accumulative_counts=COUNTS["b"],
                           clip_grad=dict(max_norm=MAX_NORM)))
    scheduler = make_scheduler(wrappers["a"].optimizer)
    *prepared, wrappers, scheduler = prepare(accelerator, *models.values(), wrappers, scheduler)
    models = dict(zip(models, prepared))
    assert wrappers["b"]._direct and not wrappers["c"]._direct
    reductions = {name: 0 for name in models}
    for name, model in models.items():
        model.register_comm_hook(None, counting_hook(reductions, name))
        wrappers[name].initialize_count_status(model, 0, STEPS)
    data = global_batches(world)
    for x, y in data:
        x, y = x[rank * BATCH:(rank + 1) * BATCH], y[rank * BATCH:(rank + 1) * BATCH]
        for name, model in models.items():
            with wrappers[name].optim_context(model):
                loss = F.mse_loss(model(x), y)
            wrappers[name].update_params(loss)
        scheduler.step()
    write_result({
        "rank": rank, "world": world, "distributed_type": str(accelerator.distributed_type),
        "reductions": reductions, "lr": wrappers["a"].get_lr()["lr"],
        "params": {name: [p.detach().flatten().tolist() for p in m.parameters()]
                   for name, m in models.items()},
        "reference": reference(data),
    })


if __name__ == "__main__":
    main()
    finish_worker()
