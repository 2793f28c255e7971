"""Training logs: interval lines, a progress bar, a JSON-lines scalar file and trackers.

Only the main process writes. Every logged record is one JSON object per line in
``<run_dir>/scalars.jsonl`` (the run's folder, see :mod:`accelwrap.runner.run_log`), e.g.::

    {"mode": "train", "epoch": 0, "iter": 12, "loss": 0.41, "lr": 0.05, "momentum": 0.9}
    {"mode": "val", "epoch": 1, "iter": 45, "accuracy": 0.96, "loss": 0.12}

The same scalars go to the trackers given to the Accelerator (``log_with``),
TensorBoard by default when it is installed, and every ``logger.interval`` iterations
one MMEngine-style line goes to the ``accelwrap`` logger (the text log and stderr). A
progress bar is shown only when stderr is a terminal.

What the text log gets from outside the run (records logged before it opens, the error
that stops the run) is :mod:`accelwrap.runner.log_capture`'s.

Example:
    >>> import torch
    >>> from accelwrap.optim import OptimWrapper
    >>> w = OptimWrapper(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1,
    ...                                  momentum=0.9))
    >>> optim_scalars(w)
    {'lr': 0.1, 'momentum': 0.9}
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from accelwrap.arguments import to_plain
from accelwrap.optim.optimizer.optimizer_wrapper_dict import members_of
from accelwrap.runner.run_log import memory_mb, train_line, val_line

logger = logging.getLogger("accelwrap")

__all__ = ["HELD_KEY", "MetricLogger", "default_trackers", "flat_config", "flatten_values",
           "init_trackers", "optim_scalars", "parse_losses"]

# runner_state.json key: the optimizer scalars (optim_scalars) when the checkpoint was
# written. A wrapper measures some of them only when it updates (the gradient norm), and
# every iteration inside the next accumulation window logs those values; a resumed run
# logs the saved ones until its first update, as the uninterrupted run does.
HELD_KEY = "held_scalars"


def parse_losses(outputs: torch.Tensor | Mapping[str, Any]
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Sum every entry whose key contains ``'loss'``; keep all entries for logging.

    Args:
        outputs: A loss tensor or a dict of tensors (a list of tensors is averaged
            element-wise first, as in MMEngine).

    Returns:
        ``(total_loss, log_vars)``; ``log_vars`` holds each entry (detached, reduced to
        a scalar) and ``'loss'``, the total.

    Raises:
        TypeError: ``outputs`` is neither, or no key contains ``'loss'``.

    Example:
        >>> total, log_vars = parse_losses({'loss_a': torch.tensor(1.0),
        ...                                 'loss_b': torch.tensor(2.0),
        ...                                 'acc': torch.tensor(0.5)})
        >>> float(total), sorted(log_vars)
        (3.0, ['acc', 'loss', 'loss_a', 'loss_b'])
    """
    if isinstance(outputs, torch.Tensor):
        return outputs, {"loss": outputs.detach()}
    if not isinstance(outputs, Mapping):
        raise TypeError(f"the model's forward must return a loss tensor or a dict of losses, "
                        f"got {type(outputs).__name__}")
    log_vars = {}
    for key, value in outputs.items():
        if isinstance(value, torch.Tensor):
            log_vars[key] = value.mean()
        elif (isinstance(value, (list, tuple)) and value
              and all(isinstance(v, torch.Tensor) for v in value)):
            log_vars[key] = sum(v.mean() for v in value)
        else:
            raise TypeError(f"the model's output {key!r} must be a tensor or a list of tensors, "
                            f"got {type(value).__name__}")
    losses = [v for k, v in log_vars.items() if "loss" in k]
    if not losses:
        raise TypeError(f"the model's output dict has no key containing 'loss' "
                        f"(keys: {sorted(outputs)})")
    total = sum(losses)
    log_vars = {k: v.detach() for k, v in log_vars.items()}
    log_vars["loss"] = total.detach()
    return total, log_vars


def flatten_values(values: Mapping[str, list[float]]) -> dict[str, float]:
    """``{'lr': [a]}`` -> ``{'lr': a}``; ``{'lr': [a, b]}`` -> ``{'lr.0': a, 'lr.1': b}``.

    Example:
        >>> flatten_values({'lr': [0.1], 'momentum': [0.9, 0.8]})
        {'lr': 0.1, 'momentum.0': 0.9, 'momentum.1': 0.8}
    """
    flat = {}
    for key, items in values.items():
        if len(items) == 1:
            flat[key] = float(items[0])
        else:
            flat.update({f"{key}.{i}": float(v) for i, v in enumerate(items)})
    return flat


def _first_values(values: Mapping[str, list[float]]) -> dict[str, float]:
    return {key: float(items[0]) for key, items in values.items() if items}


def optim_scalars(optim_wrapper: Any, per_group: bool = False) -> dict[str, float]:
    """Learning rates, momenta, grad norms, loss scale and skip counters of a wrapper (or dict).

    ``grad_norm`` is the global norm before clipping, ``grad_norm_clipped`` after it;
    ``nonfinite_skips`` / ``spike_skips`` appear once an update was skipped.

    ``OptimWrapperDict`` members are prefixed with their name (``generator.lr``). By
    default one ``lr``/``momentum`` per optimizer, its first param group's (as MMEngine
    logs), plus ``base_lr`` for several groups; ``per_group`` gives every group's
    (``lr.0``, ``lr.1``, ...).

    Args:
        optim_wrapper: An ``OptimWrapper`` or ``OptimWrapperDict``.
        per_group: Log each param group's values.

    Returns:
        Flat ``{name: float}``.
    """
    members = members_of(optim_wrapper)
    if members is not None:
        out = {}
        for name, member in members.items():
            out.update({f"{name}.{k}": v for k, v in optim_scalars(member, per_group).items()})
        return out
    flat = flatten_values if per_group else _first_values
    out = flat(optim_wrapper.get_lr())
    out.update(flat(optim_wrapper.get_momentum()))
    if optim_wrapper.grad_norm is not None:
        out["grad_norm"] = optim_wrapper.grad_norm
    clipped = getattr(optim_wrapper, "grad_norm_clipped", None)
    if clipped is not None:
        out["grad_norm_clipped"] = clipped
    for counter in ("nonfinite_skips", "spike_skips"):
        if getattr(optim_wrapper, counter, 0):
            out[counter] = float(getattr(optim_wrapper, counter))
    scaler = getattr(optim_wrapper, "loss_scaler", None)
    if scaler is not None and scaler.is_enabled():
        out["loss_scale"] = float(scaler.get_scale())
        out["skipped_steps"] = float(optim_wrapper.skipped_steps)
    return out


def default_trackers() -> list[str]:
    """``['tensorboard']`` when TensorBoard is importable, else ``[]``."""
    found = any(importlib.util.find_spec(name) is not None
                for name in ("tensorboard", "tensorboardX"))
    return ["tensorboard"] if found else []


def flat_config(cfg: Mapping) -> dict[str, Any]:
    """Flatten a config into ``{'a.b': scalar}`` for trackers' hyper-parameter tables.

    Example:
        >>> flat_config({'optim': {'lr': 0.1, 'betas': [0.9, 0.99]}, 'name': None})
        {'optim.lr': 0.1, 'optim.betas.0': 0.9, 'optim.betas.1': 0.99}
    """
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        elif isinstance(node, (list, tuple)):
            for index, value in enumerate(node):
                walk(value, f"{prefix}{index}.")
        elif isinstance(node, (int, float, str, bool)):
            out[prefix[:-1]] = node

    walk(to_plain(cfg), "")
    return out


def init_trackers(accelerator: Any, name: str, config: Mapping[str, Any],
                  resumed_at: int | None = None) -> None:
    """Start the Accelerator's trackers; a resumed run continues its curves cleanly.

    A run killed after its last checkpoint had already logged the iterations the
    resumed run logs again. ``scalars.jsonl`` drops those records (see
    :class:`MetricLogger`); TensorBoard is told to drop them too (``purge_step``: a
    restart marker that makes it discard the steps from there on).

    Args:
        accelerator: The run's Accelerator (created with ``log_with``).
        name: The experiment name (TensorBoard's sub-folder of the project dir).
        config: Flat ``{key: scalar}`` hyper-parameters stored with the run.
        resumed_at: The iteration the run resumes from; None for a fresh run.

    Example:
        >>> # init_trackers(accelerator, 'digits', {'optim_wrapper.optimizer.lr': 0.1},
        >>> #               resumed_at=12)
    """
    init_kwargs = {} if resumed_at is None else {"tensorboard": {"purge_step": resumed_at + 1}}
    accelerator.init_trackers(name, config=dict(config), init_kwargs=init_kwargs)


def _truncate_after(path: Path, iteration: int, epoch: int) -> None:
    """Rewrite ``path`` (atomically) without the records written after a checkpoint.

    The checkpoint holds ``iteration`` iterations and ``epoch`` epochs: a later iteration's
    records go, and so do those of an epoch end at that very iteration that the checkpoint
    preceded (saved by iteration before the epoch's validation; the resumed run ends that
    epoch again).
    """
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut by the kill
            continue
        at = record.get("iter", 0)
        if at < iteration or (at == iteration and record.get("epoch", 0) <= epoch):
            kept.append(line)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
    os.replace(tmp, path)


def _to_float(value: Any) -> float:
    return float(value.item() if isinstance(value, torch.Tensor) else value)


class MetricLogger:
    """Writes scalars to ``scalars.jsonl``, the trackers and the text log; drives the bar.

    Args:
        accelerator: The run's Accelerator (trackers already initialized).
        run_dir: The run's folder: ``scalars.jsonl`` is written there (appended to on
            resume).
        interval: Log training scalars every this many iterations.
        progress_bar: Show a progress bar on the main process when stderr is a terminal.
        total: Total iterations (the bar, the ETA, iteration-based lines).
        initial: Iteration to start the bar from (after a resume).
        resumed: Drop the records written after the checkpoint resumed (iteration
            ``initial``, epoch ``initial_epoch``) by the interrupted run, which the resumed
            run is about to write again; after a restart from scratch (``initial`` 0), all.
        epoch_length: Iterations per epoch (``[e][i/epoch_length]`` in the lines).
        by_epoch: Epoch-based lines (``Epoch(train)``) or iteration-based (``Iter(train)``).
        initial_epoch: Epochs completed at ``initial``.

    Example:
        >>> # logger = MetricLogger(accelerator, 'work_dirs/x/20250101_120000', total=100)
        >>> # logger.log_train(epoch=0, iteration=1, in_epoch=1, scalars={'loss': 0.3}, timing={})
    """

    def __init__(self, accelerator: Any, run_dir: str | os.PathLike, interval: int = 1,
                 progress_bar: bool = True, total: int = 0, initial: int = 0,
                 resumed: bool = False, epoch_length: int = 0, by_epoch: bool = True,
                 initial_epoch: int = 0) -> None:
        if interval < 1:
            raise ValueError(f"default_hooks.logger.interval must be >= 1, got {interval!r}")
        self.accelerator = accelerator
        self.interval, self.total = interval, total
        self.epoch_length, self.by_epoch = epoch_length or total, by_epoch
        self.main = accelerator.is_main_process
        self.path = Path(run_dir) / "scalars.jsonl"
        if self.main:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if resumed and self.path.is_file():
                _truncate_after(self.path, initial, initial_epoch)
        self._file = open(self.path, "a", encoding="utf-8") if self.main else None
        self._bar = self._redirect = None
        if self.main and progress_bar and sys.stderr.isatty():
            from tqdm.auto import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            self._bar = tqdm(total=total, initial=initial, dynamic_ncols=True, mininterval=0.5,
                             file=sys.stderr, desc="train")
            self._redirect = logging_redirect_tqdm([logger])
            self._redirect.__enter__()

    def should_log(self, iteration: int) -> bool:
        """Whether iteration ``iteration`` (1-based) logs its training scalars."""
        return iteration % self.interval == 0

    def _write(self, record: dict[str, Any], step: int) -> None:
        if not self.main:
            return
        self._file.write(json.dumps(record) + "\n")
        scalars = {f"{record['mode']}/{k}": v for k, v in record.items()
                   if k not in ("mode", "epoch", "iter")
                   and isinstance(v, float) and math.isfinite(v)}
        if self.accelerator.trackers:
            self.accelerator.log(scalars, step=step)

    def log_train(self, epoch: int, iteration: int, in_epoch: int, scalars: Mapping[str, Any],
                  timing: Mapping[str, float] | None = None) -> None:
        """Record one training iteration's scalars and log its line (with ``timing``;
        ``in_epoch``: the iterations of this epoch done, shown as ``[epoch][i/N]``)."""
        record = {"mode": "train", "epoch": epoch, "iter": iteration}
        record.update({k: _to_float(v) for k, v in scalars.items()})
        self._write(record, iteration)
        if not self.main:
            return
        values = {k: v for k, v in record.items() if k not in ("mode", "epoch", "iter")}
        if timing is not None:
            timing = {**timing, "memory": memory_mb(self.accelerator.device)}
            logger.info(train_line(values, epoch, iteration, self.epoch_length, self.total,
                                   self.by_epoch, timing, in_epoch))
        if self._bar is not None:
            lr = next((v for k, v in record.items() if k.endswith("lr")), None)
            postfix = {"epoch": epoch, "loss": f"{record.get('loss', float('nan')):.4g}"}
            if lr is not None:
                postfix["lr"] = f"{lr:.3g}"
            self._bar.set_postfix(postfix, refresh=False)

    def advance(self, steps: int = 1) -> None:
        """Move the progress bar by ``steps`` iterations."""
        if self._bar is not None:
            self._bar.update(steps)

    def log_val(self, epoch: int, iteration: int, metrics: Mapping[str, float],
                batches: int = 0) -> None:
        """Record validation metrics and log their line (``epoch``: epochs completed)."""
        record = {"mode": "val", "epoch": epoch, "iter": iteration}
        record.update({k: _to_float(v) for k, v in metrics.items()})
        self._write(record, iteration)
        if self.main:
            values = {k: v for k, v in record.items() if k not in ("mode", "epoch", "iter")}
            logger.info(val_line(values, epoch, batches, self.by_epoch))

    def flush(self) -> None:
        """Push buffered lines to disk."""
        if self._file is not None:
            self._file.flush()
        for handler in logger.handlers:
            handler.flush()

    def close(self) -> None:
        """Flush and close the file and the bar."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._redirect is not None:
            self._redirect.__exit__(None, None, None)
            self._redirect = None
