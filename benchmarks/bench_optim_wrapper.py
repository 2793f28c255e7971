"""Per-iteration cost of accelwrap's OptimWrapper next to a raw loop, Accelerate and MMEngine.

One training iteration (forward, MSE loss, backward, and the update when the
accumulation window ends) on an MLP, CPU, one thread, one process. Four loops run
interleaved, block by block, so machine noise hits them alike:

* ``raw``: plain PyTorch (the floor).
* ``accelerate``: a hand-written Accelerate loop: prepared model and optimizer,
  ``accelerator.no_sync`` while accumulating, ``accelerator.backward``,
  ``accelerator.clip_grad_norm_``, the prepared optimizer's ``step``/``zero_grad``.
* ``accelwrap``: ``OptimWrapper(..., accelerator=accelerator)``, ``optim_context`` +
  ``update_params``.
* ``mmengine``: MMEngine's ``OptimWrapper`` with the same loop (when installed).

Usage::

    python benchmarks/bench_optim_wrapper.py            # full table
    python benchmarks/bench_optim_wrapper.py --rounds 5 --iters 20 --hidden 64
    python benchmarks/bench_optim_wrapper.py --device cuda   # on a GPU (wall clock, synced)
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import random
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

BATCH, IN, OUT = 32, 32, 10
CLOCKS = {"cpu": time.thread_time, "wall": time.perf_counter}


def make_model(hidden: int, device: torch.device | str = "cpu") -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(IN, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, OUT)).to(device)


def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)


def raw_loop(hidden: int, counts: int, clip: bool, accelerator,
             check: bool = False) -> Callable[[int, tuple], None]:
    """Plain PyTorch; with ``check``, the cheapest NaN/inf test before each update (the
    clipping norm read, else one fused kernel over the gradients and its flag read): a
    non-finite update is skipped."""
    model = make_model(hidden, accelerator.device)
    optimizer = make_optimizer(model)
    params = list(model.parameters())
    found, one = torch.zeros(1, device=accelerator.device), torch.ones(1, device=accelerator.device)

    def finite(norm: torch.Tensor | None) -> bool:
        if norm is not None:
            return math.isfinite(norm.item())
        torch._amp_foreach_non_finite_check_and_unscale_([p.grad for p in params], found, one)
        if found.item():
            found.zero_()
            return False
        return True

    def step(i: int, batch: tuple) -> None:
        loss = F.mse_loss(model(batch[0]), batch[1])
        (loss / counts if counts > 1 else loss).backward()
        if (i + 1) % counts == 0:
            norm = torch.nn.utils.clip_grad_norm_(params, 1.0) if clip else None
            if not check or finite(norm):
                optimizer.step()
            optimizer.zero_grad()
    step.model = model  # for the test that the check really skips
    return step


def accelerate_loop(hidden: int, counts: int, clip: bool,
                    accelerator) -> Callable[[int, tuple], None]:
    model = accelerator.prepare(make_model(hidden))
    optimizer = accelerator.prepare(make_optimizer(model))
    params = list(model.parameters())

    def step(i: int, batch: tuple) -> None:
        sync = (i + 1) % counts == 0
        with contextlib.nullcontext() if sync else accelerator.no_sync(model):
            loss = F.mse_loss(model(batch[0]), batch[1])
            accelerator.backward(loss / counts if counts > 1 else loss)
        if sync:
            if clip:
                accelerator.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad()
    return step


def wrapper_loop(make_wrapper: Callable) -> Callable:
    def build(hidden: int, counts: int, clip: bool, accelerator) -> Callable[[int, tuple], None]:
        model = make_model(hidden, accelerator.device)
        wrapper = make_wrapper(make_optimizer(model), counts, dict(max_norm=1.0) if clip else None,
                               accelerator)

        def step(i: int, batch: tuple) -> None:
            with wrapper.optim_context(model):
                loss = F.mse_loss(model(batch[0]), batch[1])
            wrapper.update_params(loss)
        return step
    return build


def accelwrap_wrapper(optimizer, counts, clip_grad, accelerator):
    from accelwrap.optim import OptimWrapper
    return OptimWrapper(accelerator.prepare(optimizer), accumulative_counts=counts,
                        clip_grad=clip_grad, accelerator=accelerator)


def mmengine_wrapper(optimizer, counts, clip_grad, accelerator):
    from mmengine.optim import OptimWrapper as MMOptimWrapper
    return MMOptimWrapper(optimizer, accumulative_counts=counts, clip_grad=clip_grad)


def loops() -> dict[str, Callable]:
    found = {"raw": raw_loop, "accelerate": accelerate_loop,
             "accelwrap": wrapper_loop(accelwrap_wrapper)}
    try:
        import mmengine.optim  # noqa: F401
        found["mmengine"] = wrapper_loop(mmengine_wrapper)
    except ImportError:
        pass
    return found


def measure(hidden: int, counts: int, clip: bool, rounds: int, iters: int, accelerator,
            clock: Callable[[], float]) -> dict[str, list[float]]:
    """Microseconds per iteration of every timed block, for every loop (interleaved blocks)."""
    gen = torch.Generator().manual_seed(0)
    data = [(torch.randn(BATCH, IN, generator=gen).to(accelerator.device),
             torch.randn(BATCH, OUT, generator=gen).to(accelerator.device))
            for _ in range(iters)]
    # A GPU runs asynchronously: wait for its queue before every clock reading.
    sync = torch.cuda.synchronize if accelerator.device.type == "cuda" else (lambda: None)
    steps = {name: build(hidden, counts, clip, accelerator) for name, build in loops().items()}
    samples: dict[str, list[float]] = {name: [] for name in steps}
    order = list(steps)
    shuffle = random.Random(0).shuffle
    for round_ in range(rounds + 1):
        shuffle(order)
        for name in order:
            step = steps[name]
            sync()
            start = clock()
            for i, batch in enumerate(data):
                step(i, batch)
            sync()
            if round_:  # round 0 is warm-up
                samples[name].append((clock() - start) / iters * 1e6)
    return samples


def table(rows: list[tuple[tuple, dict[str, list[float]]]], stat: Callable) -> str:
    """A markdown table of ``stat`` over the blocks, with the ratio to ``raw``."""
    names = list(rows[0][1])
    lines = ["| hidden | accum | clip | " + " | ".join(names) + " |",
             "|---" * (3 + len(names)) + "|"]
    for (hidden, counts, clip), samples in rows:
        value = {name: stat(blocks) for name, blocks in samples.items()}
        cells = [f"{value[n]:.0f} ({value[n] / value['raw']:.2f}x)" for n in names]
        lines.append(f"| {hidden} | {counts} | {'on' if clip else 'off'} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 512])
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--rounds", type=int, default=200, help="timed blocks per loop")
    parser.add_argument("--iters", type=int, default=8,
                        help="iterations per block (a multiple of every --counts)")
    parser.add_argument("--clock", choices=list(CLOCKS), default=None,
                        help="cpu: this thread's CPU time (robust on a shared machine, and with "
                             "one torch thread it is all the work; the default on CPU); wall: "
                             "elapsed time (the default, and the only choice, with --device cuda)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="where the models and batches live (cuda: the first GPU)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA GPU here")
    if args.device == "cuda" and args.clock == "cpu":
        parser.error("--clock cpu with --device cuda: the GPU's work is not this thread's CPU "
                     "time; use --clock wall")
    args.clock = args.clock or ("wall" if args.device == "cuda" else "cpu")
    torch.set_num_threads(1)
    from accelwrap.optim import make_accelerator
    accelerator = make_accelerator(cpu=args.device == "cpu")
    load = os.getloadavg()[0]
    clock = CLOCKS[args.clock]
    rows = [((hidden, counts, clip),
             measure(hidden, counts, clip, args.rounds, args.iters, accelerator, clock))
            for hidden in args.hidden for counts in args.counts for clip in (False, True)]
    where = f" on {torch.cuda.get_device_name(0)}" if args.device == "cuda" else ""
    print(f"torch {torch.__version__}{where}, 1 thread, batch {BATCH}, {args.clock} clock, "
          f"{args.rounds} blocks x {args.iters} iterations per loop, loops interleaved in "
          f"shuffled order; load average "
          f"{load:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    print("Median us/iteration (ratio to raw):\n")
    print(table(rows, statistics.median))
    print("\nBest block, us/iteration (ratio to raw; least disturbed by other processes):\n")
    print(table(rows, min))


if __name__ == "__main__":
    main()
