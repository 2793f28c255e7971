"""Runner overhead: the default config through the Runner vs a hand-written Accelerate loop.

1. **Training throughput** (samples/s, 1 process, CPU): ``Runner.train()`` on
   ``configs/digits_sgd_multistep.yaml`` vs a hand-written loop doing the same work with
   the same objects: prepared model/dataloader/optimizer, the same schedulers stepped the
   same way, one JSON line per iteration, validation and ``accelerator.save_state`` after
   every epoch. Runs alternate; the median of ``--rounds`` is reported.
2. **Checkpoint save + load**: the runner's atomic ``CheckpointManager.save`` + ``load``
   (Accelerate's ``save_state``/``load_state``, runner state JSON, fsync, renames,
   ``latest`` pointer) vs two references holding the same content (model, optimizer and
   scheduler state, the Python/NumPy/torch RNG states Accelerate stores, the runner
   state) in one file: ``torch.save`` + ``torch.load(weights_only=True)``, and the same
   made durable (file and folder fsync'ed). Three more show what Accelerate's own
   multi-file format costs: bare ``accelerator.save_state`` + ``load_state`` of the same
   objects (no runner state, fsync, renames or pointer, as a hand-written Accelerate loop
   checkpoints), and the same followed by an fsync of its files and folder ("durable
   save_state": the floor of a durable checkpoint in the format ``load_state`` reads;
   issue 13's target is accelwrap <= 1.10x of it), and "atomic save_state": the same
   saved into a staging folder that is renamed into place after its fsync (the parent
   fsync'ed after the rename), the least any checkpoint costs that a crash mid-save cannot
   leave half-written. The six run interleaved in shuffled order; medians of
   ``--ckpt-repeats``, for 9.6k, 1.0M and 4.3M parameters.
   ``--ckpt-dir`` picks the file system (a tmpfs such as ``/dev/shm`` separates the CPU
   cost from the disk's).

    python benchmarks/bench_runner.py --rounds 5 --ckpt-repeats 30
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from accelerate.state import AcceleratorState, GradientState, PartialState  # noqa: E402

from accelwrap.config import load_config  # noqa: E402
from accelwrap.optim.scheduler import step_param_schedulers  # noqa: E402
from accelwrap.runner import CheckpointManager, Runner  # noqa: E402
from accelwrap.runner.durable import fsync_all, tree_paths  # noqa: E402
from accelwrap.runner.loops import validate  # noqa: E402
from accelwrap.runner.rng import rng_snapshot  # noqa: E402

QUIET = ["default_hooks.logger.progress_bar=false", "default_hooks.logger.trackers=null"]


def _reset() -> None:
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    PartialState._reset_state()


def _runner(work_dir: str, extra: list[str] = ()) -> Runner:
    cfg = load_config(REPO / "configs" / "digits_sgd_multistep.yaml", [*QUIET, *extra])
    cfg.work_dir = work_dir
    return Runner.from_cfg(cfg)


def time_runner(work_dir: str) -> float:
    """Seconds of ``Runner.train()`` on the default config."""
    runner = _runner(work_dir)
    start = time.perf_counter()
    runner.train()
    elapsed = time.perf_counter() - start
    _reset()
    return elapsed


def time_hand_loop(work_dir: str) -> float:
    """Seconds of a hand-written loop over the same prepared objects."""
    runner = _runner(work_dir)  # only to build identical objects; its loop is not used
    acc, model, loader = runner.accelerator, runner.train_model, runner.train_dataloader
    optimizer = runner.optim_wrapper.optimizer
    schedulers = runner.param_schedulers
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    log = open(Path(work_dir) / "hand.jsonl", "w")
    start = time.perf_counter()
    step = 0
    for epoch in range(runner.schedule.max_epochs):
        loader.set_epoch(epoch)
        for batch in loader:
            loss = model(**batch)["loss"]
            acc.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            step += 1
            log.write(json.dumps({"iter": step, "loss": loss.item(),
                                  "lr": optimizer.param_groups[0]["lr"]}) + "\n")
            step_param_schedulers(schedulers, "iter")
        step_param_schedulers(schedulers, "epoch")
        validate(runner)
        acc.save_state(str(Path(work_dir) / f"hand_epoch_{epoch}"))
    elapsed = time.perf_counter() - start
    log.close()
    _reset()
    return elapsed


def checkpoint_content(runner: Runner, state: dict) -> dict:
    """Everything one checkpoint of ``runner`` holds, as one picklable dict (the references)."""
    return {"model": runner.model.state_dict(),
            "optimizer": runner.optim_wrapper.optimizer.state_dict(),
            "schedulers": [s.state_dict() for s in runner.param_schedulers],
            "rng": rng_snapshot(), "runner": state}


def save_then_load(save: Callable[[], Any], load: Callable[[Any], Any]) -> float:
    """Call ``save()``, then ``load`` on what it returned; return the seconds ``save`` took."""
    start = time.perf_counter()
    saved = save()
    seconds = time.perf_counter() - start
    load(saved)
    return seconds


def torch_save(target: Path, content: dict, durable: bool) -> Path:
    """``torch.save`` of ``content`` (file and folder fsync'ed when ``durable``)."""
    torch.save(content, target)
    if durable:
        fsync_all([target, target.parent])
    return target


def durable_save_state(accelerator: Any, target: Path) -> str:
    """``accelerator.save_state`` into ``target``, then fsync its files, itself and its parent."""
    accelerator.save_state(str(target))
    fsync_all([*tree_paths(target), target.parent])
    return str(target)


def atomic_save_state(accelerator: Any, target: Path) -> str:
    """The least an atomic durable checkpoint costs: ``save_state`` into a staging folder,
    fsync its files and itself, rename it to ``target``, fsync the parent (no state file,
    pointer, sums or checks)."""
    staging = target.with_name(f".tmp-{target.name}")
    accelerator.save_state(str(staging))
    fsync_all(tree_paths(staging))
    os.replace(staging, target)
    fsync_all([target.parent])
    return str(target)


def torch_load(target: Path) -> None:
    """``torch.load(weights_only=True)``, with NumPy's RNG state allowed as Accelerate allows it."""
    from accelerate.utils.other import TORCH_SAFE_GLOBALS

    with torch.serialization.safe_globals(TORCH_SAFE_GLOBALS):
        torch.load(target, weights_only=True)


def time_checkpoint(work_dir: str, ckpt_dir: str, repeats: int,
                    extra: list[str] = ()) -> dict[str, tuple[float, float, float]]:
    """Median (save, load, save + load) seconds of the runner's checkpoints and the references."""
    runner = _runner(work_dir, ["train_cfg.max_epochs=1", *extra])
    runner.train()
    from accelwrap.runner.loops import TrainLoop

    state = TrainLoop(runner).state()
    # Keep every checkpoint: deleting old ones is a retention policy, not save + load.
    folder = Path(ckpt_dir)
    manager = CheckpointManager(runner.accelerator, folder / "checkpoints", max_keep=None,
                                layout=runner.checkpoints.layout)  # the declared-files checks
    content = checkpoint_content(runner, state)

    acc = runner.accelerator
    cases = {
        "accelwrap": lambda i: save_then_load(
            lambda: manager.save(f"bench_{i}", {**state, "iter": 10_000 + i}),
            lambda path: manager.load(path, runner.fingerprint)),
        "bare save_state": lambda i: save_then_load(
            lambda: acc.save_state(str(folder / f"bare_{i}")), acc.load_state),
        "durable save_state": lambda i: save_then_load(
            lambda: durable_save_state(acc, folder / f"synced_{i}"), acc.load_state),
        "atomic save_state": lambda i: save_then_load(
            lambda: atomic_save_state(acc, folder / f"atomic_{i}"), acc.load_state),
        "torch.save": lambda i: save_then_load(
            lambda: torch_save(folder / f"plain_{i}.pt", content, False), torch_load),
        "durable torch.save": lambda i: save_then_load(
            lambda: torch_save(folder / f"durable_{i}.pt", content, True), torch_load),
    }
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    order = random.Random(0)
    for i in range(repeats + 2):  # the first two rounds warm up
        for name in order.sample(list(cases), len(cases)):
            start = time.perf_counter()
            saved = cases[name](i)
            if i >= 2:
                times[name].append((saved, time.perf_counter() - start - saved))
    _reset()
    return {name: (statistics.median(save for save, _ in pairs),
                   statistics.median(load for _, load in pairs),
                   statistics.median(save + load for save, load in pairs))
            for name, pairs in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ckpt-repeats", type=int, default=30)
    parser.add_argument("--ckpt-dir", default=None,
                        help="file system for the checkpoint part (default: the temp folder)")
    parser.add_argument("--skip-training", action="store_true", help="only the checkpoint part")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_training:
            report_training(tmp, args.rounds)
        for label, extra in (("default MLP, 9.6k params", []),
                             ("MLP 64-960-960-10, 1.0M params", ["model.hidden_dims=[960,960]"]),
                             ("MLP 64-2048-2048-10, 4.3M params",
                              ["model.hidden_dims=[2048,2048]"])):
            with tempfile.TemporaryDirectory(dir=args.ckpt_dir) as ckpt_dir:
                result = time_checkpoint(f"{tmp}/{len(label)}", ckpt_dir, args.ckpt_repeats, extra)
            ours = result["accelwrap"][2]
            print(f"checkpoint ({label}), median ms save + load = total (accelwrap/reference):")
            for name, (save, load, total) in result.items():
                print(f"  {name:20s} {save * 1e3:7.2f} + {load * 1e3:7.2f} = {total * 1e3:7.2f}"
                      f"   {ours / total:5.2f}x")


def report_training(tmp: str, rounds: int) -> None:
    """Print the Runner / hand-loop throughput ratio (median of ``rounds`` alternating runs)."""
    runner_s, hand_s = [], []
    time_runner(f"{tmp}/warmup")
    for r in range(rounds):
        runner_s.append(time_runner(f"{tmp}/runner_{r}"))
        hand_s.append(time_hand_loop(f"{tmp}/hand_{r}"))
    samples = 1438 * 10
    run_med, hand_med = statistics.median(runner_s), statistics.median(hand_s)
    print(f"training: Runner {samples / run_med:,.0f} samples/s, "
          f"hand loop {samples / hand_med:,.0f} "
          f"samples/s -> Runner/hand = {hand_med / run_med:.3f}x throughput")


if __name__ == "__main__":
    main()
