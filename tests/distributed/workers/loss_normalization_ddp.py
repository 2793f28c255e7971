"""Worker: token normalisation and the non-finite policy on a real 2-process DDP run.

Run by tests/distributed/test_loss_normalization.py under torchrun (gloo, CPU).

1. ``loss_normalization='tokens'``, ``accumulative_counts=3``, 8 iterations (windows of
   3, 3 and a remainder of 2), each rank with its own uneven micro-batches. Every rank
   also computes the one-process reference: each window of BOTH ranks' micro-batches as
   one batch (the mean over all its valid tokens), one step. ``torch.distributed
   .all_reduce`` is counted (a pass-through wrapper) to show one collective per update.
2. ``nonfinite`` skip where only rank 1 sees a NaN loss in window 1 (``check='grad'``:
   DDP spreads the NaN gradient; ``check='loss'``: the loss travels in the all-reduce):
   both ranks must skip the same update and end with the same parameters.
3. The spike rule where only rank 1's loss jumps (x1000) in the last window: the global
   loss decides, so both ranks skip it.
"""

from __future__ import annotations

import torch.distributed as dist

from accelwrap.optim import OptimWrapper, make_accelerator, prepare
from tests.distributed.launch import finish_worker, write_result
from tests.optim.optimizer import token_cases as tc

ITERS, COUNTS = 8, 3
CALLS = {"all_reduce": 0}
_all_reduce = dist.all_reduce


def counting_all_reduce(*args, **kwargs):
    CALLS["all_reduce"] += 1
    return _all_reduce(*args, **kwargs)


def reference(world: int, skip_window: int | None = None) -> list[list[float]]:
    model = tc.make_token_model()
    optimizer = tc.make_optimizer(model)
    data = [tc.token_batches(ITERS, seed=20 + r) for r in range(world)]
    groups = [[data[r][i] for r in range(world) for i in window]
              for w, window in enumerate(tc.windows(ITERS, COUNTS)) if w != skip_window]
    tc.reference(model, optimizer, groups)
    return [p.detach().flatten().tolist() for p in model.parameters()]


def train(accelerator, poison_rank: int | None = None, poison: float = float("nan"),
          at: int = 4, **wrapper_args) -> tuple:
    rank = accelerator.process_index
    model = tc.make_token_model()
    wrapper = OptimWrapper(tc.make_optimizer(model), accumulative_counts=COUNTS,
                           loss_normalization="tokens", **wrapper_args)
    model, wrapper = prepare(accelerator, model, wrapper)
    wrapper.initialize_count_status(model, 0, ITERS)
    for i, batch in enumerate(tc.token_batches(ITERS, seed=20 + rank)):
        with wrapper.optim_context(model):
            total, count = tc.loss_sum(model, batch)
        if rank == poison_rank and i == at:  # 4: window 1 (iterations 3, 4, 5)
            total = total * poison
        wrapper.update_params(total, num_tokens=count)
    params = [p.detach().flatten().tolist() for p in model.parameters()]
    return params, wrapper


def main() -> None:
    accelerator = make_accelerator()
    rank, world = accelerator.process_index, accelerator.num_processes
    dist.all_reduce = counting_all_reduce
    params, _ = train(accelerator)
    reductions = CALLS["all_reduce"]
    skips = {}
    for check in ("grad", "loss"):
        start = CALLS["all_reduce"]
        got, wrapper = train(accelerator, poison_rank=1,
                             nonfinite=dict(policy="skip", check=check))
        skips[check] = {"params": got, "nonfinite_skips": wrapper.nonfinite_skips,
                        "updates": wrapper.progress_state()["updates"],
                        "reductions": CALLS["all_reduce"] - start}
    _, wrapper = train(accelerator, poison_rank=1, poison=1000.0, at=7,
                       spike=dict(window=2, sigmas=3))
    spike = {"spike_skips": wrapper.spike_skips, **wrapper.progress_state()}
    write_result({"rank": rank, "world": world, "spike": spike,
                  "distributed_type": str(accelerator.distributed_type),
                  "tokens": [int(b[2].sum()) for b in tc.token_batches(ITERS, seed=20 + rank)],
                  "params": params, "reductions": reductions, "reference": reference(world),
                  "skips": skips, "reference_skip": reference(world, skip_window=1)})


if __name__ == "__main__":
    main()
    finish_worker()
