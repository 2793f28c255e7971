"""Where training stands in its data, in samples: resume on another world size or batch size.

Accelerate's prepared train dataloader splits one seeded global order of the dataset
(``SeedableRandomSampler``: a permutation drawn from ``seed + epoch``; or the sequential
order) into batches and gives process ``r`` of ``N`` the batches ``r, r + N, ...``. After
``b`` iterations of an epoch started at its first sample, the processes together have
consumed the first ``b * G`` samples of that order, ``G`` being the global batch (the
per-process batch size times ``N``, or the batch size with ``split_batches``).

A checkpoint records ``samples_in_epoch`` (global samples consumed) beside
``batch_in_epoch`` and its layout (``samples_per_iter``, ``epoch_length``, ``epoch_samples``).
The same layout skips ``batch_in_epoch`` batches (bit-identical, as before). Another world
size or batch size continues the epoch at its first unseen sample of the same seeded order
(:func:`tail_loader`), so every sample of every epoch is seen once; an epoch-based run's
length is recomputed (the rest of this epoch in the new layout plus the remaining epochs),
by-epoch schedulers converted to iterations move to the same point of their schedule in
the new layout's iterations (by-iteration ones stay at the update count); all is logged.

A source whose order cannot be continued at a sample (an ``IterableDataset``, a custom
(batch) sampler, torch's unseeded ``RandomSampler``, another dataset size) stops with an
error naming both layouts, unless ``train_dataloader.resume_data: approximate`` (or
``loader.resume_data = 'approximate'`` on a ``DataLoader`` given to the ``Runner``): the
epoch then continues after the whole batches covering the samples consumed.

Example:
    >>> from torch.utils.data import DataLoader
    >>> loader = DataLoader(range(96), batch_size=8, shuffle=False)
    >>> len(loader), len(tail_loader(loader, 44))  # 52 samples left: 6 full batches + 4
    (12, 7)
"""

from __future__ import annotations

import copy
import itertools
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch.utils.data import BatchSampler, IterableDataset, SequentialSampler

from accelwrap.errors import CheckpointError

__all__ = ["RESUME_DATA", "DataLayout", "LayoutChange", "epoch_loader", "position_state",
           "restore_position", "resume_policy", "samples_done", "tail_loader"]

logger = logging.getLogger("accelwrap")

#: ``train_dataloader.resume_data``: what a resume on another layout may do.
RESUME_DATA = ("exact", "approximate")
#: Keys of the part 'data position' in ``runner_state.json``.
POSITION_KEYS = ("batch_in_epoch", "epoch_length", "samples_in_epoch", "samples_per_iter",
                 "epoch_samples")


@dataclass(frozen=True)
class DataLayout:
    """How a prepared train dataloader turns the epoch's global order into iterations.

    Attributes:
        samples_per_iter: Global samples per iteration (over all processes).
        epoch_length: Iterations per epoch (per process).
        epoch_samples: Samples in one epoch's global order (None: unknown).
        processes: Number of processes.
        unmappable: Why the order cannot be continued at a sample, or None when it can.
    """

    samples_per_iter: int
    epoch_length: int
    epoch_samples: int | None
    processes: int
    unmappable: str | None = None

    def describe(self) -> str:
        """``'2 processes x 8 samples (16 per iteration), 6 iterations per epoch'``."""
        per = self.samples_per_iter // max(self.processes, 1)
        return (f"{self.processes} process(es) x {per} samples ({self.samples_per_iter} per "
                f"iteration), {self.epoch_length} iterations per epoch")


def _chain(loader: Any) -> tuple[Any, Any, Any]:
    """``(shard or None, torch BatchSampler or None, sampler or None)`` of a prepared loader."""
    outer = getattr(loader, "batch_sampler", None)
    inner = getattr(outer, "batch_sampler", None) if outer is not None else None
    if inner is None:
        return None, outer, getattr(outer, "sampler", None)
    return outer, inner, getattr(inner, "sampler", None)


def _unmappable(loader: Any, shard: Any, batches: Any, sampler: Any) -> str | None:
    from accelerate.data_loader import BatchSamplerShard, SeedableRandomSampler

    if isinstance(getattr(loader, "dataset", None), IterableDataset):
        return "an IterableDataset has no global order to continue at a sample"
    if shard is not None and type(shard) is not BatchSamplerShard:
        return f"the batch sampler is a {type(shard).__name__}, not Accelerate's BatchSamplerShard"
    if type(batches) is not BatchSampler:
        return (f"the batch sampler is a custom {type(batches).__name__}, not torch's "
                "BatchSampler")
    if not isinstance(sampler, (SeedableRandomSampler, SequentialSampler)):
        return (f"the sampler is a {type(sampler).__name__}, neither Accelerate's "
                "SeedableRandomSampler (shuffle with use_seedable_sampler) nor a SequentialSampler")
    return None


def layout_of(loader: Any, processes: int) -> DataLayout:
    """The :class:`DataLayout` of a prepared train dataloader run by ``processes`` processes.

    Example:
        >>> from torch.utils.data import DataLoader
        >>> layout_of(DataLoader(range(20), batch_size=4, shuffle=False), 1).describe()
        '1 process(es) x 4 samples (4 per iteration), 5 iterations per epoch'
    """
    shard, batches, sampler = _chain(loader)
    unmappable = _unmappable(loader, shard, batches, sampler)
    batch = getattr(batches, "batch_size", None) or getattr(loader, "batch_size", None) or 1
    split = bool(getattr(shard, "split_batches", False))
    try:
        size = len(sampler) if sampler is not None else None
    except TypeError:
        size = None
    return DataLayout(samples_per_iter=batch if split else batch * processes,
                      epoch_length=len(loader), epoch_samples=size, processes=processes,
                      unmappable=unmappable)


class _TailSampler:
    """The samples of ``sampler``'s current epoch order from position ``start`` on."""

    def __init__(self, sampler: Any, start: int) -> None:
        self.sampler = sampler
        self.start = start

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(iter(self.sampler), self.start, None)

    def __len__(self) -> int:
        return max(len(self.sampler) - self.start, 0)

    def set_epoch(self, epoch: int) -> None:
        """Forwarded to the wrapped sampler (the order is that epoch's)."""
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)


def tail_loader(loader: Any, start: int) -> Any:
    """A prepared dataloader that yields the current epoch's global order from sample ``start``.

    The batches are cut and shared out by the same samplers as ``loader``'s (copies of its
    ``BatchSampler`` and ``BatchSamplerShard`` around a sampler that skips ``start``
    samples of the epoch order), so the layout is the current one. Call
    ``loader.set_epoch(epoch)`` first.

    Args:
        loader: A dataloader returned by ``accelerator.prepare``.
        start: Global samples of the epoch already consumed.

    Returns:
        The dataloader (built like ``accelerator.skip_first_batches``'s).
    """
    from accelerate.data_loader import skip_first_batches

    shard, batches, sampler = _chain(loader)
    new_batches = copy.copy(batches)
    new_batches.sampler = _TailSampler(sampler, start)
    new_outer = new_batches
    if shard is not None:
        new_outer = copy.copy(shard)
        new_outer.batch_sampler = new_batches
    out = skip_first_batches(loader, 0)
    out.batch_sampler.batch_sampler = new_outer  # SkipBatchSampler(…, 0) around the tail
    return out


# ------------------------------------------------------------------ the loop's position
def _origin(loop: Any) -> tuple[int, int, int]:
    """``(epoch, samples, batch)`` where the current epoch's layout began (fresh: 0, 0)."""
    origin = getattr(loop, "data_origin", None)
    if origin is not None and origin[0] == loop.epoch:
        return origin
    return loop.epoch, 0, 0


def samples_done(loop: Any, layout: DataLayout) -> int:
    """Global samples of the current epoch consumed (in the epoch's global order)."""
    _, samples, batch = _origin(loop)
    done = samples + (loop.batch_in_epoch - batch) * layout.samples_per_iter
    return done if layout.epoch_samples is None else min(done, layout.epoch_samples)


def _current_layout(runner: Any) -> DataLayout:
    return layout_of(runner.train_dataloader, runner.accelerator.num_processes)


def position_state(loop: Any) -> tuple:
    """The values of :data:`POSITION_KEYS` for ``runner_state.json``."""
    layout = _current_layout(loop.runner)
    return (loop.batch_in_epoch, loop.runner.epoch_length, samples_done(loop, layout),
            layout.samples_per_iter, layout.epoch_samples)


def epoch_loader(loop: Any) -> Any:
    """What :meth:`TrainLoop._run_epoch` iterates: the epoch's loader from its position.

    The runner's train dataloader with its epoch set; after a resume inside the epoch,
    Accelerate's ``skip_first_batches`` (same layout) or :func:`tail_loader` (the epoch
    began in another layout).
    """
    runner = loop.runner
    loader = runner.train_dataloader
    loader.set_epoch(loop.epoch)
    _, samples, _ = _origin(loop)
    if samples:
        loader = tail_loader(loader, samples)
    elif loop.batch_in_epoch:
        loader = runner.accelerator.skip_first_batches(loader, loop.batch_in_epoch)
    else:
        return loader
    loader.set_epoch(loop.epoch)
    return loader


# ------------------------------------------------------------------ resuming
@dataclass(frozen=True)
class LayoutChange:
    """A resume's ``saved`` and ``current`` layouts, the ``samples`` of the epoch consumed,
    the new ``batch_in_epoch`` (``epoch_length`` minus the iterations left in the epoch)
    and whether the position is ``exact`` (False: an approximate resume)."""

    saved: DataLayout
    current: DataLayout
    samples: int
    batch: int
    exact: bool = True


def resume_policy(loader: Any) -> str:
    """``loader.resume_data`` (``'exact'`` unless set), checked.

    Raises:
        ValueError: Not one of :data:`RESUME_DATA`.

    Example:
        >>> from torch.utils.data import DataLoader
        >>> resume_policy(DataLoader(range(4)))
        'exact'
    """
    value = getattr(loader, "resume_data", "exact")
    if value not in RESUME_DATA:
        raise ValueError(f"train_dataloader.resume_data: expected one of {list(RESUME_DATA)}, "
                         f"got {value!r}")
    return value


def _saved_layout(state: Mapping[str, Any]) -> DataLayout:
    return DataLayout(samples_per_iter=int(state["samples_per_iter"]),
                      epoch_length=int(state["epoch_length"]),
                      epoch_samples=state.get("epoch_samples"),
                      processes=int(state.get("world_size", 1)))


def _plan(runner: Any, state: Mapping[str, Any]) -> LayoutChange | None:
    """None for a same-layout resume; else where the epoch continues in the new layout.

    Raises:
        CheckpointError: The data cannot be continued exactly and no approximate resume
            is allowed.
    """
    saved, current = _saved_layout(state), _current_layout(runner)
    samples, batch = int(state["samples_in_epoch"]), int(state["batch_in_epoch"])
    if (saved.samples_per_iter == current.samples_per_iter
            and saved.epoch_length == current.epoch_length
            and samples == min(batch * current.samples_per_iter,
                               current.epoch_samples or samples)):
        return None
    reason = current.unmappable
    if reason is None and saved.epoch_samples not in (None, current.epoch_samples):
        reason = (f"the epoch has {current.epoch_samples} samples, the checkpoint's had "
                  f"{saved.epoch_samples} (another dataset)")
    if reason is None:
        # Accelerate's own rules (padding, even_batches, drop_last) count what is left.
        left = len(tail_loader(runner.train_dataloader, samples))
        return LayoutChange(saved, current, samples, current.epoch_length - left)
    if getattr(runner, "resume_data", "exact") != "approximate":
        raise CheckpointError(
            f"cannot resume the data position exactly: the checkpoint was saved with "
            f"{saved.describe()} (world size {saved.processes}), this run has "
            f"{current.describe()} (world size {current.processes}), and {reason}. Resume "
            "with the checkpoint's world size and batch size, or allow an approximate resume "
            "(the epoch continues after the batches covering the samples consumed) with "
            "train_dataloader.resume_data: approximate (or loader.resume_data = 'approximate')")
    skip = min(samples // current.samples_per_iter, current.epoch_length)
    return LayoutChange(saved, current, skip * current.samples_per_iter, skip, exact=False)


def _reposition(schedulers: Sequence[Any], kinds: Sequence[str], position: int,
                iteration: int) -> list[str]:
    """Move converted by-epoch schedulers to ``position`` (new layout's iterations)."""
    lines = []
    for index, (scheduler, kind) in enumerate(zip(schedulers, kinds)):
        if kind != "converted" or not hasattr(scheduler, "_global_step"):
            continue
        state = scheduler.state_dict()
        old = state["_global_step"]
        state["_global_step"] = position
        if "last_step_offset" not in state:
            state["last_step"] = state["last_step"] + position - old
        scheduler.load_state_dict(state)
        lines.append(f"param_scheduler[{index}] {type(scheduler).__name__} (by epoch, converted "
                     f"to iterations): at iteration {position} of the new layout (was {old})")
    if any(kind == "iter" for kind in kinds):
        lines.append(f"by-iteration schedulers continue at iteration {iteration} (one step per "
                     "optimizer update); an `end` left to the default is the run length of "
                     "the new layout from the start")
    return lines


def restore_position(loop: Any, state: Mapping[str, Any], schedulers: Sequence[Any]) -> None:
    """Put the data position of ``state`` back into ``loop``, adapting to a new layout.

    Same layout: ``batch_in_epoch`` as saved. Another layout: the epoch continues at its
    first unseen sample, ``runner.max_iters`` and converted by-epoch schedulers follow, and
    the changes are logged. A checkpoint from before samples were recorded keeps the old
    rule (a changed ``epoch_length`` restarts the epoch, with a warning).

    Args:
        loop: The training loop (``epoch`` and ``iter`` already restored).
        state: The checkpoint's ``runner_state.json``.
        schedulers: The runner's schedulers in build order (already loaded).
    """
    runner = loop.runner
    loop.batch_in_epoch = int(state["batch_in_epoch"])
    loop.data_origin = None
    if "samples_in_epoch" not in state:
        if state.get("epoch_length") != runner.epoch_length:
            logger.warning("checkpoint from before data positions were recorded in samples, "
                           "with %s iterations per epoch (now %d): the epoch restarts",
                           state.get("epoch_length"), runner.epoch_length)
            loop.batch_in_epoch = 0
        return
    change = _plan(runner, state)
    if change is not None:
        loop.batch_in_epoch = change.batch
        loop.data_origin = (loop.epoch, change.samples, change.batch) if change.exact else None
    if runner.schedule.by_epoch:  # also after an earlier layout change that now lines up
        runner.max_iters = (loop.iter + runner.epoch_length - loop.batch_in_epoch
                            + (runner.schedule.max_epochs - loop.epoch - 1) * runner.epoch_length)
    if change is not None:
        _report_change(loop, state, change, schedulers)


def _report_change(loop: Any, state: Mapping[str, Any], change: LayoutChange,
                   schedulers: Sequence[Any]) -> None:
    """Log what a resume on another layout changed (and move converted schedulers)."""
    runner = loop.runner
    left = runner.epoch_length - change.batch
    position = loop.epoch * runner.epoch_length + change.batch
    same = (change.saved.samples_per_iter, change.saved.epoch_length) == (
        change.current.samples_per_iter, change.current.epoch_length)
    lines = [f"this epoch began with another layout; now {change.current.describe()}" if same
             else f"saved with {change.saved.describe()}; now {change.current.describe()}",
             f"epoch {loop.epoch + 1} continues at sample {change.samples} of "
             f"{change.current.epoch_samples} of its order"
             + ("" if change.exact else " (approximate: rounded down to a whole batch)")
             + f": {left} iterations left in it",
             f"the run ends at iteration {runner.max_iters} (the checkpoint's run was to end "
             f"at {state.get('max_iters', '?')})"]
    lines += _reposition(schedulers, getattr(runner, "scheduler_kinds", ()), position, loop.iter)
    logger.warning("resuming on another layout:\n  %s", "\n  ".join(lines))
