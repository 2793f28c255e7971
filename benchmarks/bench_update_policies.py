"""Per-iteration cost of the update policies next to the plain OptimWrapper, side by side.

The small-MLP CPU benchmark of ``bench_optim_wrapper.py`` (same model, batch, optimizer,
clock and interleaving), one process, every loop an accelwrap ``OptimWrapper`` bound to
the same Accelerator:

* ``plain``: the default wrapper (``loss_normalization='mean'``, no ``nonfinite`` key);
* ``tokens``: ``loss_normalization='tokens'``: the summed loss and ``num_tokens`` per
  micro-batch, one gradient scaling per update (with one micro-batch per update on one
  process: the backward seeded with ``1/num_tokens`` instead);
* ``nonfinite``: ``nonfinite=dict(policy='skip', check='grad')``: every update's NaN/inf
  test (one fused kernel over the gradients, or the clipping norm when it is on) and its
  host read;
* ``nonfinite loss``: ``nonfinite=dict(policy='skip', check='loss')``;
* ``tokens + skip``: both of the first two together (the scaling and the test in one
  pass);
* two references without accelwrap: ``torch``, a hand-written PyTorch loop (its ratio is
  to ``plain``), and ``torch + check``, the same loop with the least a NaN/inf test can
  cost (its ratio is to ``torch``): without clipping, one call of the fused kernel
  ``torch._amp_foreach_non_finite_check_and_unscale_`` over the gradients and one read of
  its flag; with clipping, one read of the norm ``clip_grad_norm_`` returns. It is the
  floor of the ``nonfinite`` column.

The median table's ratio is the median over rounds of each round's ratio to its ``plain``
block (see :func:`ratio`); the best-block table compares the best blocks.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_update_policies.py
    python benchmarks/bench_update_policies.py --rounds 5 --iters 8 --hidden 64
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import statistics
from collections.abc import Callable

import torch
import torch.nn.functional as F
from bench_optim_wrapper import BATCH, CLOCKS, IN, OUT, make_model, make_optimizer, raw_loop

POLICIES: dict[str, dict] = {
    "plain": {},
    "tokens": {"loss_normalization": "tokens"},
    "nonfinite": {"nonfinite": {"policy": "skip", "check": "grad"}},
    "nonfinite loss": {"nonfinite": {"policy": "skip", "check": "loss"}},
    "tokens + skip": {"loss_normalization": "tokens",
                      "nonfinite": {"policy": "skip", "check": "grad"}},
}


def build(policy: dict, hidden: int, counts: int, clip: bool,
          accelerator) -> Callable[[tuple], None]:
    """One training iteration with a wrapper configured by ``policy``."""
    from accelwrap.optim import OptimWrapper

    model = make_model(hidden, accelerator.device)
    wrapper = OptimWrapper(accelerator.prepare(make_optimizer(model)), accumulative_counts=counts,
                           clip_grad=dict(max_norm=1.0) if clip else None,
                           accelerator=accelerator, **policy)
    tokens = policy.get("loss_normalization") == "tokens"

    def step(batch: tuple) -> None:
        with wrapper.optim_context(model):
            out = model(batch[0])
        if tokens:  # the summed loss and its element count: the same update as the mean
            wrapper.update_params(F.mse_loss(out, batch[1], reduction="sum"),
                                  num_tokens=BATCH * OUT)
        else:
            wrapper.update_params(F.mse_loss(out, batch[1]))
    return step


def build_torch(check: bool, hidden: int, counts: int, clip: bool,
                accelerator) -> Callable[[tuple], None]:
    """The same iteration as ``bench_optim_wrapper``'s hand-written PyTorch loop; with
    ``check``, the cheapest NaN/inf test before each update (a non-finite one is skipped)."""
    raw, calls = raw_loop(hidden, counts, clip, accelerator, check=check), itertools.count()

    def step(batch: tuple) -> None:
        raw(next(calls), batch)
    step.model = raw.model  # for the test that the check really skips
    return step


REFERENCES = {"torch": ("plain", False), "torch + check": ("torch", True)}


def measure(hidden: int, counts: int, clip: bool, rounds: int, iters: int, accelerator,
            clock: Callable[[], float]) -> dict[str, list[float]]:
    """Microseconds per iteration of each timed block, per policy (blocks interleaved)."""
    gen = torch.Generator().manual_seed(0)
    data = [(torch.randn(BATCH, IN, generator=gen), torch.randn(BATCH, OUT, generator=gen))
            for _ in range(iters)]
    steps = {name: build(policy, hidden, counts, clip, accelerator)
             for name, policy in POLICIES.items()}
    steps.update((name, build_torch(check, hidden, counts, clip, accelerator))
                 for name, (_, check) in REFERENCES.items())
    blocks: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    rng = random.Random(0)
    for block in range(rounds + 1):
        rng.shuffle(names)
        for name in names:
            begin = clock()
            for batch in data:
                steps[name](batch)
            if block:  # block 0 warms up
                blocks[name].append((clock() - begin) / iters * 1e6)
    return blocks


def ratio(blocks: dict[str, list[float]], name: str, stat: Callable) -> float:
    """``name``'s cost relative to ``plain`` (``torch + check``: to ``torch``).

    For the median: the median over rounds of the ratio to the ``plain`` block of the same
    round (every round runs each policy once, back to back, so a change of machine load
    between rounds cancels out); for the best block: the ratio of the best blocks.
    """
    base = blocks[REFERENCES[name][0] if name in REFERENCES else "plain"]
    if stat is statistics.median:
        return statistics.median(b / p for b, p in zip(blocks[name], base))
    return stat(blocks[name]) / stat(base)


def _row(case: tuple, blocks: dict[str, list[float]], stat: Callable) -> str:
    hidden, counts, clip = case
    cells = [f"{stat(blocks[name]):.0f} ({ratio(blocks, name, stat):.2f}x)"
             for name in (*POLICIES, *REFERENCES)]
    return "| " + " | ".join([str(hidden), str(counts), "on" if clip else "off", *cells]) + " |"


def table(rows: list[tuple[tuple, dict[str, list[float]]]], stat: Callable) -> str:
    """Markdown: ``stat`` of each policy's blocks and its :func:`ratio` to ``plain``."""
    columns = ["hidden", "accum", "clip", *POLICIES, "torch (vs plain)", "torch + check (vs torch)"]
    head = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(head + [_row(case, blocks, stat) for case, blocks in rows])


def arguments() -> argparse.Namespace:
    """The command line: model sizes, accumulation counts, blocks, clock."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--hidden", type=int, nargs="+", default=[64, 512], help="MLP widths")
    add("--counts", type=int, nargs="+", default=[1, 4], help="accumulative_counts values")
    add("--rounds", type=int, default=200, help="timed blocks per policy")
    add("--iters", type=int, default=8, help="iterations per block (a multiple of --counts)")
    add("--clock", choices=list(CLOCKS), default="cpu",
        help="cpu: this thread's CPU time (default); wall: elapsed time")
    return parser.parse_args()


def main() -> None:
    args = arguments()
    torch.set_num_threads(1)
    from accelwrap.optim import make_accelerator
    accelerator = make_accelerator(cpu=True)
    load = os.getloadavg()[0]
    cases = [(h, c, clip) for h in args.hidden for c in args.counts for clip in (False, True)]
    rows = [(case, measure(*case, args.rounds, args.iters, accelerator, CLOCKS[args.clock]))
            for case in cases]
    print(f"torch {torch.__version__}, 1 thread, batch {BATCH}, {args.clock} clock, "
          f"{args.rounds} blocks x {args.iters} iterations per policy, interleaved in shuffled "
          f"order; load average {load:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    for title, stat in (("Median us/iteration (median of the per-round ratios to plain)",
                         statistics.median),
                        ("Best block, us/iteration (ratio to plain's best block)", min)):
        print(f"{title}:\n\n{table(rows, stat)}\n")


if __name__ == "__main__":
    main()
