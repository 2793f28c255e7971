"""Runner overhead: the default config through the Runner vs a hand-written Accelerate loop.

1. **Training throughput** (samples/s, 1 process, CPU): ``Runner.train()`` on
   ``configs/digits_sgd_multistep.yaml`` vs a hand-written loop doing the same work with
   the same objects: prepared model/dataloader/optimizer, the same schedulers stepped the
   same way, one JSON line per iteration, validation and ``accelerator.save_state`` after
   every epoch. Runs alternate; the median of ``--rounds`` is reported.
2. **Checkpoint save + load**: the runner's atomic ``CheckpointManager.save`` + ``load``
   vs ``torch.save`` + ``torch.load(weights_only=True)`` of the same tensors (model,
   optimizer and scheduler state, RNG states) into one file.

    python benchmarks/bench_runner.py --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from accelerate.state import AcceleratorState, GradientState, PartialState  # noqa: E402

from accelwrap.config import load_config  # noqa: E402
from accelwrap.runner import CheckpointManager, Runner  # noqa: E402
from accelwrap.runner.checkpoint import _fsync_dir  # noqa: E402
from accelwrap.runner.loops import validate  # noqa: E402

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
            for s in schedulers:
                if not s.by_epoch:
                    s.step()
        for s in schedulers:
            if s.by_epoch:
                s.step()
        validate(runner)
        acc.save_state(str(Path(work_dir) / f"hand_epoch_{epoch}"))
    elapsed = time.perf_counter() - start
    log.close()
    _reset()
    return elapsed


def time_checkpoint(work_dir: str, repeats: int, extra: list[str] = ()) -> tuple[float, float, float]:
    """Median seconds of runner save + load, torch.save + load, and fsync'ed torch.save + load."""
    runner = _runner(work_dir, ["train_cfg.max_epochs=1", *extra])
    runner.train()
    from accelwrap.runner.loops import TrainLoop

    state = TrainLoop(runner).state()
    # Keep every checkpoint: deleting old ones is a retention policy, not save + load.
    manager = CheckpointManager(runner.accelerator, Path(work_dir) / "bench", max_keep=None)
    tensors = {"model": runner.model.state_dict(), "optimizer": runner.optim_wrapper.optimizer.state_dict(),
               "schedulers": [s.state_dict() for s in runner.param_schedulers],
               "rng": torch.get_rng_state()}
    ours, plain, durable = [], [], []
    for i in range(repeats):
        start = time.perf_counter()
        path = manager.save(f"bench_{i}", {**state, "iter": 10_000 + i})
        manager.load(path)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        target = Path(work_dir) / f"plain_{i}.pt"
        torch.save(tensors, target)
        torch.load(target, weights_only=True)
        plain.append(time.perf_counter() - start)
        start = time.perf_counter()
        target = Path(work_dir) / f"durable_{i}.pt"
        with open(target, "wb") as f:
            torch.save(tensors, f)
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(target.parent)
        torch.load(target, weights_only=True)
        durable.append(time.perf_counter() - start)
    _reset()
    return statistics.median(ours), statistics.median(plain), statistics.median(durable)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ckpt-repeats", type=int, default=20)
    args = parser.parse_args()
    runner_s, hand_s = [], []
    with tempfile.TemporaryDirectory() as tmp:
        time_runner(f"{tmp}/warmup")
        for r in range(args.rounds):
            runner_s.append(time_runner(f"{tmp}/runner_{r}"))
            hand_s.append(time_hand_loop(f"{tmp}/hand_{r}"))
        small = time_checkpoint(f"{tmp}/ckpt", args.ckpt_repeats)
        big = time_checkpoint(f"{tmp}/ckpt_big", args.ckpt_repeats, ["model.hidden_dims=[2048,2048]"])
    samples = 1438 * 10
    run_med, hand_med = statistics.median(runner_s), statistics.median(hand_s)
    print(f"training: Runner {samples / run_med:,.0f} samples/s, hand loop {samples / hand_med:,.0f} "
          f"samples/s -> Runner/hand = {hand_med / run_med:.3f}x throughput")
    for label, (ours, plain, durable) in (("default MLP, 9.6k params", small),
                                          ("MLP 64-2048-2048-10, 4.3M params", big)):
        print(f"checkpoint save+load ({label}): runner {ours * 1e3:.1f} ms, torch.save+load "
              f"{plain * 1e3:.1f} ms ({ours / plain:.2f}x), fsync'ed torch.save+load "
              f"{durable * 1e3:.1f} ms ({ours / durable:.2f}x)")


if __name__ == "__main__":
    main()
