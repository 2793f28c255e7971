"""Training stall per checkpoint: ``default_hooks.checkpoint.async`` on vs off, side by side.

A >= 50M-parameter MLP with AdamW on CPU (1 process) trains ``--steps`` iterations between
checkpoints; the stall is the wall time training spends inside ``CheckpointManager.save``
(for async: the snapshot, plus any wait for the previous background write). Both modes
run in one process, alternating, into their own folders; the last async write is waited
for (and timed) at the end.

Run: ``python benchmarks/bench_async_checkpoint.py [--hidden 4096] [--saves 3] [--steps 3]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from accelerate import Accelerator

from accelwrap.runner.checkpoint import CheckpointManager


def _model(hidden: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(1024, hidden), torch.nn.ReLU(),
                               *[m for _ in range(3) for m in (torch.nn.Linear(hidden, hidden),
                                                               torch.nn.ReLU())],
                               torch.nn.Linear(hidden, 10))


def _loop(async_save: bool) -> SimpleNamespace:
    cfg = SimpleNamespace(on_error="raise", async_save=async_save)
    return SimpleNamespace(runner=SimpleNamespace(checkpoint_cfg=cfg, ema=None))


def main() -> None:
    """Print the markdown table of stalls (seconds) per mode."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=4096)
    parser.add_argument("--saves", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    acc = Accelerator(cpu=True)
    model = _model(args.hidden)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model, optimizer = acc.prepare(model, optimizer)
    params = sum(p.numel() for p in model.parameters())
    x, y = torch.randn(32, 1024), torch.randint(0, 10, (32,))

    def train(steps: int) -> None:
        for _ in range(steps):
            optimizer.zero_grad()
            acc.backward(torch.nn.functional.cross_entropy(model(x), y))
            optimizer.step()

    train(1)  # optimizer state exists before the first save
    stalls: dict[str, list[float]] = {"sync": [], "async": []}
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as root:
        managers = {mode: CheckpointManager(acc, Path(root) / mode, max_keep=1)
                    for mode in stalls}
        for i in range(args.saves):
            for mode, manager in managers.items():
                train(args.steps)
                start = time.perf_counter()
                manager.save(f"iter_{i}", {"iter": i, "epoch": 0}, loop=_loop(mode == "async"))
                stalls[mode].append(time.perf_counter() - start)
        start = time.perf_counter()
        managers["async"].wait()
        end_wait = time.perf_counter() - start
    sync, asyn = statistics.median(stalls["sync"]), statistics.median(stalls["async"])
    print(f"{params / 1e6:.1f}M parameters, AdamW, {args.saves} saves per mode, "
          f"{args.steps} iterations between saves; stall = time inside save() (median)\n")
    print("| mode | stall per checkpoint (s) | vs sync | each save (s) |")
    print("| --- | --- | --- | --- |")
    for mode, value in (("sync", sync), ("async", asyn)):
        each = ", ".join(f"{s:.3f}" for s in stalls[mode])
        print(f"| {mode} | {value:.3f} | {value / sync:.2f}x | {each} |")
    print(f"\nwait for the last async write at the end: {end_wait:.3f} s")


if __name__ == "__main__":
    main()
