"""Worker: the reported grad norm under DDP or FSDP2 equals the unsharded one-process norm.

Usage: torchrun --nproc_per_node 2 grad_norm.py {ddp|fsdp2} [...]

Each backend named is one case, run one after the other in the same job (a fresh
Accelerator each; the process group stays); the result is keyed by backend.

Each rank trains on its own variable-length micro-batches with
``loss_normalization='tokens'``, ``accumulative_counts=3`` and norm clipping, 5 iterations
(a window of 3 and a remainder of 2). Every rank also computes the reference in one
process, unsharded: each window of every rank's micro-batches as one batch (mean over all
its tokens), the norm of those gradients before and after ``clip_grad_norm_``, and the
parameters. FSDP2 on CPU uses the test-only override of ``train_fsdp_worker.py``.
"""

from __future__ import annotations

import sys

import torch
from accelerate.state import AcceleratorState, GradientState

from accelwrap.optim import OptimWrapper, make_accelerator, prepare
from tests.distributed.launch import finish_worker, write_result
from tests.optim.optimizer import token_cases as tc

ITERS, COUNTS, MAX_NORM = 5, 3, 0.05


def make_backend_accelerator(backend: str):
    if backend == "ddp":
        return make_accelerator()
    from tests.distributed.train_fsdp_worker import make_fsdp_accelerator
    return make_fsdp_accelerator()


def reference(world: int) -> dict:
    model = tc.make_token_model()
    optimizer = tc.make_optimizer(model)
    data = [tc.token_batches(ITERS, seed=10 + r) for r in range(world)]
    norms = []
    for window in tc.windows(ITERS, COUNTS):
        sums, counts = zip(*(tc.loss_sum(model, data[r][i]) for r in range(world) for i in window))
        loss = torch.stack(sums).sum() / torch.stack(counts).sum()
        norms.append(tc.clipped_step(model, optimizer, loss, MAX_NORM))
    before, after = zip(*norms)
    return {"before": list(before), "after": list(after), "params": tc.flat_params(model)}


def full_params(model) -> list[list[float]]:
    out = []
    for param in model.parameters():
        value = param.detach()
        value = value.full_tensor() if hasattr(value, "full_tensor") else value
        out.append(value.flatten().tolist())
    return out


def run_case(backend: str) -> dict:
    """One case: train under ``backend`` (``ddp`` or ``fsdp2``)."""
    AcceleratorState._reset_state()  # a new plugin; the process group stays
    GradientState._reset_state()
    accelerator = make_backend_accelerator(backend)
    rank, world = accelerator.process_index, accelerator.num_processes
    model = tc.make_token_model()
    wrapper = OptimWrapper(tc.make_optimizer(model), accumulative_counts=COUNTS,
                           clip_grad=dict(max_norm=MAX_NORM), loss_normalization="tokens")
    model, wrapper = prepare(accelerator, model, wrapper)
    wrapper.initialize_count_status(model, 0, ITERS)
    before, after, grad_types = [], [], set()
    for i, batch in enumerate(tc.token_batches(ITERS, seed=10 + rank)):
        with wrapper.optim_context(model):
            total, count = tc.loss_sum(model, batch)
        wrapper.backward(total, num_tokens=count)
        if wrapper.should_update():
            wrapper.step()
            grad_types |= {type(p.grad).__name__ for p in model.parameters()}
            before.append(wrapper.grad_norm)
            after.append(wrapper.grad_norm_clipped)
            wrapper.zero_grad()
    return {"rank": rank, "world": world, "distributed_type": str(accelerator.distributed_type),
            "grad_types": sorted(grad_types), "before": before, "after": after,
            "params": full_params(model), "reference": reference(world)}


def main() -> None:
    """Run every backend of the command line (FSDP2's CPU override last: it changes the
    process's state); one result, keyed by backend."""
    write_result({backend: run_case(backend) for backend in sys.argv[1:]})


if __name__ == "__main__":
    main()
    finish_worker()
