"""Training stall per checkpoint: ``default_hooks.checkpoint.async`` on vs off, side by side.

A >= 50M-parameter MLP with AdamW on CPU trains ``--steps`` iterations between
checkpoints; the stall is the wall time training spends inside ``CheckpointManager.save``
(for async: the snapshot, plus any wait for the previous background write). Both modes
run in one job, alternating, into their own folders; the last async write is waited for
(and timed) at the end. With ``--processes 2`` the job is 2 CPU processes over gloo (DDP,
started with torchrun as ``accelerate launch`` does); a save's stall is the slowest
rank's (DDP's next all-reduce makes the others wait for it). With ``--launch-config
launch_configs/fsdp.yaml`` the workers are started by ``accelerate launch`` with that file
instead and the Accelerator is the runner's (FSDP2 over gloo on a machine without CUDA:
sharded checkpoints, the async save through DCP's ``async_save``).

Run: ``python benchmarks/bench_async_checkpoint.py [--hidden 4096] [--saves 3] [--steps 3]
[--processes 2] [--launch-config launch_configs/fsdp.yaml]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from accelerate import Accelerator

from accelwrap.runner.build import build_accelerator
from accelwrap.runner.checkpoint import CheckpointManager

WORKER_ENV = "ACCELWRAP_BENCH_WORKER"


def _model(hidden: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(1024, hidden), torch.nn.ReLU(),
                               *[m for _ in range(3) for m in (torch.nn.Linear(hidden, hidden),
                                                               torch.nn.ReLU())],
                               torch.nn.Linear(hidden, 10))


def _loop(async_save: bool) -> SimpleNamespace:
    cfg = SimpleNamespace(on_error="raise", async_save=async_save)
    return SimpleNamespace(runner=SimpleNamespace(checkpoint_cfg=cfg, ema=None))


def _slowest(acc: Accelerator, values: list[float]) -> list[float]:
    """Per save, the slowest rank's value (all ranks' lists, gathered)."""
    if acc.num_processes == 1:
        return values
    from accelerate.utils import gather_object

    per_rank = gather_object([values])
    return [max(column) for column in zip(*per_rank)]


def measure(args: argparse.Namespace) -> None:
    """Train and save in both modes; rank 0 prints the markdown table of stalls."""
    torch.manual_seed(0)
    launched = args.launch_config is not None  # the runner's Accelerator, as the launch set it
    acc = build_accelerator({}, None, args.root, []) if launched else Accelerator(cpu=True)
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
    waits: dict[str, list[float]] = {"sync": [], "async": []}
    root = Path(args.root)
    managers = {mode: CheckpointManager(acc, root / mode, max_keep=1) for mode in stalls}
    for i in range(args.saves):
        for mode, manager in managers.items():
            train(args.steps)
            start = time.perf_counter()
            manager.wait()  # what save() does first: timed apart, counted in the stall
            waits[mode].append(time.perf_counter() - start)
            manager.save(f"iter_{i}", {"iter": i, "epoch": 0}, loop=_loop(mode == "async"))
            stalls[mode].append(time.perf_counter() - start)
    start = time.perf_counter()
    managers["async"].wait()
    end_wait = _slowest(acc, [time.perf_counter() - start])[0]
    stalls = {mode: _slowest(acc, values) for mode, values in stalls.items()}
    waits = {mode: _slowest(acc, values) for mode, values in waits.items()}
    if not acc.is_main_process:
        return
    sync, asyn = statistics.median(stalls["sync"]), statistics.median(stalls["async"])
    print(f"{params / 1e6:.1f}M parameters, AdamW, {acc.num_processes} process(es) "
          f"({acc.distributed_type.value}), {args.saves} saves per mode, {args.steps} "
          f"iterations between saves; stall = time inside save(), slowest rank (median)\n")
    print("| mode | stall per checkpoint (s) | vs sync | each save (s) | of which waiting for "
          "the previous write (s) |")
    print("| --- | --- | --- | --- | --- |")
    for mode, value in (("sync", sync), ("async", asyn)):
        each = ", ".join(f"{s:.3f}" for s in stalls[mode])
        waited = ", ".join(f"{s:.3f}" for s in waits[mode])
        print(f"| {mode} | {value:.3f} | {value / sync:.2f}x | {each} | {waited} |")
    print(f"\nwait for the last async write at the end: {end_wait:.3f} s")


def main() -> None:
    """Parse the arguments; with ``--processes N > 1`` start N workers under torchrun."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=4096)
    parser.add_argument("--saves", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--launch-config", help="an accelerate launch config for the workers")
    parser.add_argument("--root", help=argparse.SUPPRESS)  # the workers' shared folder
    args = parser.parse_args()
    if os.environ.get(WORKER_ENV) or (args.processes <= 1 and not args.launch_config):
        if args.root:
            return measure(args)
        with tempfile.TemporaryDirectory(dir=Path.cwd()) as root:
            args.root = root
            return measure(args)
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as root:
        env = {**os.environ, WORKER_ENV: "1", "ACCELERATE_USE_CPU": "1",
               "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        launcher = (["-m", "accelerate.commands.launch", "--config_file", args.launch_config,
                     "--num_processes", str(args.processes)] if args.launch_config else
                    ["-m", "torch.distributed.run", "--standalone",
                     f"--nproc_per_node={args.processes}"])
        cmd = [sys.executable, *launcher, __file__, "--hidden", str(args.hidden), "--saves",
               str(args.saves), "--steps", str(args.steps), "--root", root,
               *(["--launch-config", args.launch_config] if args.launch_config else [])]
        sys.exit(subprocess.run(cmd, env=env).returncode)


if __name__ == "__main__":
    main()
