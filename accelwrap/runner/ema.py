"""MMEngine's ``EMAHook`` (``custom_hooks: [{type: EMAHook, momentum: 0.0002}]``).

The averaged weights follow MMEngine's ``ExponentialMovingAverage``: ``averaged =
(1 - momentum) * averaged + momentum * current`` (``momentum`` is the weight of the *new*
value, a small number), updated after every training iteration once ``begin_iter`` /
``begin_epoch`` is reached (before that they copy the weights), the first update copying,
then one in every ``interval`` updates averaging. Only parameters are averaged unless
``update_buffers`` (then every floating-point ``state_dict`` entry; MMEngine keeps the
others as first copied). Validation runs with the averaged weights swapped in, as
MMEngine's hook does. They are taken from the unwrapped model on each process (DDP keeps
the processes' weights equal: no communication), and saved by the main process as
``ema.safetensors`` in every checkpoint (averaged tensors under the model's
``state_dict`` names, the update count in the file's metadata).

Other ``custom_hooks`` are not run: each gets one warning line.

Example:
    >>> import torch
    >>> ema, notes = parse_custom_hooks([dict(type='EMAHook', momentum=0.5)])
    >>> model = torch.nn.Linear(1, 1, bias=False)
    >>> ema.attach(model)
    >>> for value in (1.0, 3.0):
    ...     _ = model.weight.data.fill_(value)
    ...     ema.update(iteration=0, epoch=0)
    >>> ema.averaged['weight'].item()  # first update copies, then (1 + 3) / 2
    2.0
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from accelwrap.errors import CheckpointError, ConfigError
from accelwrap.registry import check_arguments, to_plain

__all__ = ["EMA", "EMA_FILE", "parse_custom_hooks"]

logger = logging.getLogger("accelwrap")

EMA_FILE = "ema.safetensors"


def _ema_keys(type: str = "EMAHook", ema_type: str = "ExponentialMovingAverage",
              momentum: float = 0.0002, interval: int = 1, update_buffers: bool = False,
              begin_iter: int = 0, begin_epoch: int = 0, strict_load: bool = False,
              priority: Any = None) -> None:
    """The keys a ``custom_hooks`` ``EMAHook`` entry accepts."""


class EMA:
    """Exponential moving average of a model's weights (MMEngine's meaning of each argument).

    Args:
        momentum: Weight of the new value, in (0, 1).
        interval: Average on one in every ``interval`` updates.
        update_buffers: Also average floating-point buffers (else only parameters).
        begin_iter: First iteration (0-based count of iterations done) that averages.
        begin_epoch: First epoch that averages (exclusive with ``begin_iter``).

    Attributes:
        averaged: ``{state_dict name: averaged tensor}``.
        steps: Updates done since averaging began.
    """

    def __init__(self, momentum: float = 0.0002, interval: int = 1, update_buffers: bool = False,
                 begin_iter: int = 0, begin_epoch: int = 0) -> None:
        self.momentum, self.interval, self.update_buffers = momentum, interval, update_buffers
        self.begin_iter, self.begin_epoch = begin_iter, begin_epoch
        self.averaged: dict[str, torch.Tensor] = {}
        self.steps = 0
        self._source: dict[str, torch.Tensor] = {}

    def attach(self, model: nn.Module) -> None:
        """Average ``model``'s weights (the unwrapped model: its tensors are the trained ones)."""
        self._source = (dict(model.state_dict(keep_vars=True)) if self.update_buffers
                        else dict(model.named_parameters()))
        self.averaged = {name: t.detach().clone() for name, t in self._source.items()}

    @torch.no_grad()
    def update(self, iteration: int, epoch: int) -> None:
        """After a training iteration (``iteration`` iterations were done before it)."""
        started = (epoch + 1 >= self.begin_epoch if self.begin_epoch > 0
                   else iteration + 1 >= self.begin_iter)
        if not started or self.steps == 0:
            for name, avg in self.averaged.items():
                avg.copy_(self._source[name].detach())
        elif self.steps % self.interval == 0:
            for name, avg in self.averaged.items():
                if avg.dtype.is_floating_point:
                    avg.lerp_(self._source[name].detach().to(avg.device), self.momentum)
        if started:
            self.steps += 1

    @torch.no_grad()
    def swap(self) -> None:
        """Exchange the model's weights and the averaged ones (call again to undo)."""
        for name, avg in self.averaged.items():
            current = self._source[name].detach()
            kept = current.clone()
            current.copy_(avg)
            avg.copy_(kept)

    def save(self, folder: Path) -> None:
        """Write :data:`EMA_FILE` into checkpoint ``folder``."""
        tensors = {name: t.detach().cpu().contiguous() for name, t in self.averaged.items()}
        save_file(tensors, str(folder / EMA_FILE), metadata={"steps": str(self.steps)})

    def load(self, folder: Path) -> None:
        """Read :data:`EMA_FILE` from checkpoint ``folder``.

        Raises:
            CheckpointError: Its tensors are not this model's (the message names them).
        """
        path = folder / EMA_FILE
        with safe_open(str(path), framework="pt") as f:
            names, steps = set(f.keys()), int((f.metadata() or {}).get("steps", 0))
            if names != set(self.averaged):
                raise CheckpointError(
                    f"{path}: the averaged weights are not this run's: missing "
                    f"{sorted(set(self.averaged) - names)}, unexpected "
                    f"{sorted(names - set(self.averaged))} (custom_hooks EMAHook "
                    f"update_buffers={self.update_buffers})")
            for name, avg in self.averaged.items():
                avg.copy_(f.get_tensor(name))
        self.steps = steps


def _build_ema(args: dict[str, Any], where: str) -> EMA:
    check_arguments(_ema_keys, args, where)
    if args.get("ema_type", "ExponentialMovingAverage") != "ExponentialMovingAverage":
        raise ValueError(f"{where}.ema_type: only 'ExponentialMovingAverage' is supported, "
                         f"got {args['ema_type']!r}")
    momentum = args.get("momentum", 0.0002)
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) \
            or not 0.0 < momentum < 1.0:
        raise ValueError(f"{where}.momentum: expected a number in (0, 1) (the new value's "
                         f"weight, e.g. 0.0002), got {momentum!r}")
    if momentum > 0.5:
        logger.warning("%s.momentum=%s: MMEngine's momentum is the weight of the new value, "
                       "usually small (e.g. 0.0002)", where, momentum)
    ints = {key: args.get(key, default) for key, default in
            (("interval", 1), ("begin_iter", 0), ("begin_epoch", 0))}
    for key, value in ints.items():
        low = 1 if key == "interval" else 0
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{where}.{key}: expected an integer >= {low}, got {value!r}")
    if ints["begin_iter"] and ints["begin_epoch"]:
        raise ValueError(f"{where}: set begin_iter or begin_epoch, not both")
    if not isinstance(args.get("update_buffers", False), bool):
        raise ValueError(f"{where}.update_buffers: expected true or false, "
                         f"got {args['update_buffers']!r}")
    return EMA(momentum=float(momentum), update_buffers=args.get("update_buffers", False), **ints)


def parse_custom_hooks(cfg: Any) -> tuple[EMA | None, list[str]]:
    """The ``EMAHook`` of ``custom_hooks`` (if any), and one note per hook not run.

    Args:
        cfg: The ``custom_hooks`` list (or None).

    Returns:
        ``(ema or None, notes)``.

    Raises:
        ConfigError: A malformed entry, bad ``EMAHook`` arguments, or two ``EMAHook``.
    """
    hooks = to_plain(cfg) or []
    if not isinstance(hooks, list):
        raise ConfigError([f"custom_hooks: expected a list of dict(type=...), got {hooks!r}"])
    ema, notes, problems = None, [], []
    for index, hook in enumerate(hooks):
        where = f"custom_hooks[{index}]"
        if not isinstance(hook, Mapping) or "type" not in hook:
            problems.append(f"{where}: expected dict(type=..., ...), got {hook!r}")
        elif hook["type"] != "EMAHook":
            notes.append(f"{where}: {hook['type']!r} is not run by accelwrap (of "
                         f"custom_hooks it runs only EMAHook); ignored")
        elif ema is not None:
            problems.append(f"{where}: a second EMAHook; accelwrap runs one")
        else:
            try:
                ema = _build_ema(dict(hook), where)
            except (TypeError, ValueError) as err:
                problems.append(str(err))
    if problems:
        raise ConfigError(problems)
    return ema, notes
