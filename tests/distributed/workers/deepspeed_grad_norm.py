"""Worker: the grad norm accelwrap reports under DeepSpeed ZeRO equals the unsharded norm.

Usage: accelerate launch --config_file launch_configs/deepspeed_cpu.yaml
       deepspeed_grad_norm.py STAGE COUNTS [STAGE COUNTS ...]

Each ``STAGE COUNTS`` pair is one case, run one after the other in the same launch (a
fresh Accelerator and engine each; the process group stays), so a launch's start-up is
paid once for all of them.

Each rank trains a tiny MLP on its own micro-batches (a mean loss per micro-batch) with
``accumulative_counts=COUNTS`` and ``clip_grad=dict(max_norm=MAX_NORM)``, 5 iterations.
Every rank also computes the reference in one process, unsharded: each window's
gradient is the mean over ranks and micro-batches of the per-micro-batch gradients (what
data parallelism with the wrapper's loss division gives), its norm before and after
``torch.nn.utils.clip_grad_norm_``, then an SGD step. It then checks that the settings
DeepSpeed cannot honour are refused before anything is prepared.
"""

from __future__ import annotations

import importlib
import sys

import torch
from accelerate.state import AcceleratorState, GradientState
from torch import nn

from accelwrap.optim import OptimWrapper, make_accelerator, prepare
from tests.distributed.launch import finish_worker, write_result
from tests.optim.optimizer import token_cases as tc

ITERS, MAX_NORM, LR = 5, 0.05, 0.1
REFUSED = {"tokens": dict(loss_normalization="tokens"),
           "nonfinite": dict(nonfinite=dict(policy="skip")),
           "spike": dict(spike=dict(window=4, sigmas=3.0))}


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))


def batches(rank: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(10 + rank)
    return [(torch.randn(6, 4, generator=gen), torch.randn(6, 2, generator=gen))
            for _ in range(ITERS)]


def loss_of(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


def reference(world: int, counts: int) -> dict:
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    data = [batches(r) for r in range(world)]
    norms = []
    for window in tc.windows(ITERS, counts):
        losses = [loss_of(model, data[r][i]) for r in range(world) for i in window]
        loss = torch.stack(losses).sum() / len(losses)
        norms.append(tc.clipped_step(model, optimizer, loss, MAX_NORM))
    before, after = zip(*norms)
    return {"before": list(before), "after": list(after), "params": tc.flat_params(model)}


def refusals(accelerator) -> dict[str, str]:
    """The error each setting DeepSpeed cannot honour gives (``''``: not refused)."""
    out = {}
    for name, kwargs in REFUSED.items():
        model = make_model()
        wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=LR), **kwargs)
        try:
            wrapper.validate_accelerator(accelerator)
            out[name] = ""
        except ValueError as err:
            out[name] = str(err)
    return out


def skip_shm_build() -> None:
    """Keep DeepSpeed from compiling its shared-memory op (~2 minutes on 2 cores, once per
    machine): only ``inference_all_reduce`` uses it; training reduces through gloo."""
    # importlib: the attribute deepspeed.comm.torch is the torch package, not the module
    importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None


def run_case(stage: int, counts: int) -> dict:
    """One case: train under ZeRO ``stage`` with ``accumulative_counts=counts``."""
    AcceleratorState._reset_state()  # a new DeepSpeed plugin; the process group stays
    GradientState._reset_state()
    accelerator = make_accelerator()
    plugin = accelerator.state.deepspeed_plugin
    plugin.deepspeed_config["zero_optimization"]["stage"] = stage
    rank, world = accelerator.process_index, accelerator.num_processes

    plugin.deepspeed_config.update(train_micro_batch_size_per_gpu=6, train_batch_size=6 * world)
    model = make_model()
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=LR), accumulative_counts=counts,
                           clip_grad=dict(max_norm=MAX_NORM))
    model, wrapper = prepare(accelerator, model, wrapper)
    wrapper.initialize_count_status(model, 0, ITERS)
    before, after, engine_norms = [], [], []
    for batch in batches(rank):
        with wrapper.optim_context(model):
            loss = loss_of(model, batch)
        wrapper.update_params(loss)
        if wrapper.last_update_applied or wrapper.should_update():
            before.append(wrapper.grad_norm)
            after.append(wrapper.grad_norm_clipped)
            engine_norms.append(float(model.get_global_grad_norm()))
    return {"rank": rank, "world": world,
            "distributed_type": str(accelerator.distributed_type),
            "backend": str(torch.distributed.get_backend()),
            "zero_stage": model.zero_optimization_stage(),
            "gradient_clipping": model.gradient_clipping(),
            "before": before, "after": after, "engine_norms": engine_norms,
            "params": tc.flat_params(model),
            "reference": reference(world, counts), "refusals": refusals(accelerator)}


def main() -> None:
    """Run every ``STAGE COUNTS`` case of the command line; one result, keyed ``S:C``."""
    numbers = [int(arg) for arg in sys.argv[1:]]
    skip_shm_build()
    results = {f"{stage}:{counts}": run_case(stage, counts)
               for stage, counts in zip(numbers[::2], numbers[1::2])}
    write_result(results)


if __name__ == "__main__":
    main()
    finish_worker()
