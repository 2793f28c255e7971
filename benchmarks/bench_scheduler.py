"""Cost of one scheduler step: accelwrap vs MMEngine vs torch ``SequentialLR``.

The schedule is a linear warm-up and a cosine decay of the learning rate plus a cosine
weight-decay schedule, iteration-based, on an SGD optimizer with 64 param groups. One
"step" steps every scheduler of the library once (what a runner does after an
iteration). torch has no weight-decay scheduler, so its column is warm-up + cosine
(``SequentialLR``) only. The three libraries run interleaved, block by block, so machine
noise hits them alike; the table reports the best per-block mean (as ``timeit`` does), measured
during the warm-up, just after it, and again after ``--far`` more steps (the cost must
not grow with steps).

Usage::

    python benchmarks/bench_scheduler.py                 # full table
    python benchmarks/bench_scheduler.py --rounds 3 --block 200 --far 2000
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from collections.abc import Callable

import torch

GROUPS, WARMUP, TOTAL = 64, 1000, 1_000_000


def make_optimizer() -> torch.optim.Optimizer:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.1 * (1 + i % 4),
               "weight_decay": 1e-4 * (1 + i % 3)} for i in range(GROUPS)]
    return torch.optim.SGD(groups, lr=0.1, momentum=0.9)


def cfgs() -> list[dict]:
    return [dict(type="LinearLR", start_factor=0.01, by_epoch=False, end=WARMUP),
            dict(type="CosineAnnealingLR", by_epoch=False, begin=WARMUP, end=TOTAL,
                 eta_min_ratio=0.01),
            dict(type="CosineAnnealingParamScheduler", param_name="weight_decay",
                 by_epoch=False, end=TOTAL, eta_min=0.0)]


def step_all(schedulers: list) -> Callable[[], None]:
    """One runner step: every scheduler once."""
    methods = [s.step for s in schedulers]

    def step() -> None:
        for method in methods:
            method()
    return step


def accelwrap_step() -> Callable[[], None]:
    from accelwrap.optim.scheduler import build_param_schedulers

    return step_all(build_param_schedulers(cfgs(), make_optimizer()))


def mmengine_step() -> Callable[[], None]:
    import mmengine.optim  # noqa: F401 - registers the schedulers
    from mmengine.registry import PARAM_SCHEDULERS

    optimizer = make_optimizer()
    return step_all([PARAM_SCHEDULERS.build(c, default_args=dict(optimizer=optimizer))
                     for c in cfgs()])


def torch_step() -> Callable[[], None]:
    from torch.optim import lr_scheduler as tl

    optimizer = make_optimizer()
    warm = tl.LinearLR(optimizer, start_factor=0.01, total_iters=WARMUP)
    cosine = tl.CosineAnnealingLR(optimizer, T_max=TOTAL - WARMUP, eta_min=0.001)
    sequential = tl.SequentialLR(optimizer, [warm, cosine], milestones=[WARMUP])
    return sequential.step


LIBRARIES = {"accelwrap": accelwrap_step, "mmengine": mmengine_step,
             "torch SequentialLR": torch_step}


def advance(steps: dict, count: int) -> None:
    for step in steps.values():
        for _ in range(count):
            step()


def measure(steps: dict, rounds: int, block: int) -> dict:
    """Best over rounds of the mean microseconds per step, libraries interleaved."""
    samples: dict = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(block):
                step()
            samples[name].append((time.perf_counter() - start) / block * 1e6)
    return {name: min(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--block", type=int, default=500)
    parser.add_argument("--far", type=int, default=200_000, help="steps before the second timing")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    # Three instances per library, advanced to different points and timed interleaved.
    points = {"in warm-up": 10, "after warm-up": WARMUP + 10, "far": WARMUP + 10 + args.far}
    steps = {}
    for name, make in LIBRARIES.items():
        for point, count in points.items():
            steps[name, point] = make()
            advance({point: steps[name, point]}, count)
    best = measure(steps, args.rounds, args.block)
    print(f"one step of warm-up + cosine + weight-decay schedules, {GROUPS} param groups "
          f"(torch {torch.__version__}, µs per step, best of {args.rounds} blocks of "
          f"{args.block})\n")
    print(f"| library | in warm-up | after warm-up | {args.far:,} steps later "
          "| vs MMEngine (after warm-up) |")
    print("|---|---:|---:|---:|---:|")
    for name in LIBRARIES:
        row = [best[name, point] for point in points]
        ratio = row[1] / best["mmengine", "after warm-up"]
        print(f"| {name} | " + " | ".join(f"{v:.1f}" for v in row) + f" | {ratio:.2f}x |")

if __name__ == "__main__":
    main()
