"""Worker: ZeroRedundancyOptimizer built from config, trained on a 2-process DDP run.

Each rank trains on its shard of every global batch through ``build_optim_wrapper``
with an Accelerator (DDP over gloo), then computes a plain single-process reference on
the full batches with the ordinary torch optimizer. Run by tests/distributed/test_zero.py.
"""

from __future__ import annotations

import torch
from accelerate import Accelerator
from torch import nn

from accelwrap.optim import ZeroRedundancyOptimizer, build_optim_wrapper
from tests.distributed.launch import finish_worker, write_result

STEPS, BATCH = 6, 4
CASES = {
    "sgd": ({"optimizer": {"type": "ZeroRedundancyOptimizer", "optimizer_type": "SGD",
                           "lr": 0.1, "momentum": 0.9}},
            lambda m: torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9), 1),
    "adamw_groups": ({"optimizer": {"type": "ZeroRedundancyOptimizer", "optimizer_type": "AdamW",
                                    "lr": 0.01, "weight_decay": 0.01},
                      "paramwise_cfg": {"bias_lr_mult": 2.0, "bias_decay_mult": 0.0},
                      "accumulative_counts": 2},
                     lambda m: torch.optim.AdamW(
                         [{"params": [p for n, p in m.named_parameters() if n.endswith("weight")]},
                          {"params": [p for n, p in m.named_parameters() if n.endswith("bias")],
                           "lr": 0.02, "weight_decay": 0.0}], lr=0.01, weight_decay=0.01), 2),
}


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3), nn.Tanh(), nn.Linear(3, 2))


def batches(world: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    return [(torch.randn(world * BATCH, 4, generator=gen),
             torch.randn(world * BATCH, 2, generator=gen))
            for _ in range(STEPS)]


def train_zero(accelerator: Accelerator, cfg: dict) -> dict:
    model = accelerator.prepare(make_model())
    wrapper = build_optim_wrapper(model, cfg, accelerator=accelerator)
    zero = wrapper.optimizer
    while not isinstance(zero, ZeroRedundancyOptimizer):
        zero = zero.optimizer
    rank, world = accelerator.process_index, accelerator.num_processes
    for x, y in batches(world):
        rows = slice(rank * BATCH, (rank + 1) * BATCH)
        with wrapper.optim_context(model):
            loss = (model(x[rows]) - y[rows]).square().mean()
        wrapper.update_params(loss)
    state = wrapper.state_dict()
    return {"params": [p.detach().tolist() for p in model.module.parameters()],
            "local_state": len(zero.optim.state),
            "full_state": len(state.get("state", {})) if state else 0,
            "groups": len(zero.param_groups)}


def train_reference(make_optimizer, counts: int, world: int) -> list:
    model = make_model()
    optimizer = make_optimizer(model)
    for step, (x, y) in enumerate(batches(world), start=1):
        ((model(x) - y).square().mean() / counts).backward()
        if step % counts == 0:
            optimizer.step()
            optimizer.zero_grad()
    return [p.detach().tolist() for p in model.parameters()]


def main() -> None:
    accelerator = Accelerator(cpu=True)
    result = {"rank": accelerator.process_index, "world": accelerator.num_processes,
              "distributed_type": str(accelerator.distributed_type)}
    for name, (cfg, make_optimizer, counts) in CASES.items():
        result[name] = train_zero(accelerator, cfg)
        result[name]["reference"] = train_reference(make_optimizer, counts,
                                                    accelerator.num_processes)
    write_result(result)


if __name__ == "__main__":
    main()
    finish_worker()
