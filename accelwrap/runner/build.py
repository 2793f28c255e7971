"""Building the runner's parts from config: train schedule, accelerator, model, schedulers.

Each function takes a config value (dict, ``DictConfig`` or an object) and never
modifies it.

Example:
    >>> parse_train_cfg(dict(by_epoch=True, max_epochs=3, val_interval=1)).by_epoch
    True
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from accelwrap.errors import LaunchError
from accelwrap.optim.accelerator import make_accelerator
from accelwrap.optim.scheduler import build_param_schedulers
from accelwrap.registry import check_arguments, to_plain
from accelwrap.runner.models import MODELS

__all__ = ["TrainSchedule", "build_accelerator", "build_model", "build_schedulers",
           "parse_train_cfg"]


@dataclass(frozen=True)
class TrainSchedule:
    """How long to train and when to validate (MMEngine's ``train_cfg``).

    Attributes:
        by_epoch: Epoch-based (True) or iteration-based (False) training.
        max_epochs: Epochs to train (epoch-based only).
        max_iters: Iterations to train (iteration-based only).
        val_interval: Validate every this many epochs / iterations.
        val_begin: First epoch / iteration at which validation may run.
    """

    by_epoch: bool = True
    max_epochs: int | None = None
    max_iters: int | None = None
    val_interval: int = 1
    val_begin: int = 1

    def total_iters(self, epoch_length: int) -> int:
        """Iterations of the whole run for ``epoch_length`` iterations per epoch."""
        return self.max_epochs * epoch_length if self.by_epoch else self.max_iters

    def val_due(self, count: int, last: int) -> bool:
        """Whether validation runs after epoch/iteration ``count`` (1-based) of ``last``."""
        return count >= self.val_begin and (count % self.val_interval == 0 or count == last)


def _train_cfg_signature(by_epoch: bool = True, max_epochs: int | None = None,
                         max_iters: int | None = None, val_interval: int = 1,
                         val_begin: int = 1) -> None:
    """The keys ``train_cfg`` accepts (used to check them)."""


def parse_train_cfg(cfg: Mapping | TrainSchedule) -> TrainSchedule:
    """Check ``train_cfg`` and turn it into a :class:`TrainSchedule`.

    Args:
        cfg: ``dict(by_epoch=True, max_epochs=N)`` or ``dict(by_epoch=False,
            max_iters=N)``, plus optional ``val_interval`` / ``val_begin``.

    Returns:
        The schedule.

    Raises:
        TypeError: Unknown keys.
        ValueError: The length key is missing, not a positive integer, or given for
            the other mode.
    """
    if isinstance(cfg, TrainSchedule):
        return cfg
    args = to_plain(cfg)
    if not isinstance(args, Mapping):
        raise TypeError(f"train_cfg: expected a dict such as dict(by_epoch=True, max_epochs=3), "
                        f"got {cfg!r}")
    check_arguments(_train_cfg_signature, args, "train_cfg")
    by_epoch = args.get("by_epoch", True)
    need, other = ("max_epochs", "max_iters") if by_epoch else ("max_iters", "max_epochs")
    if args.get(other) is not None:
        raise ValueError(f"train_cfg: {other}={args[other]!r} does not fit by_epoch={by_epoch}; "
                         f"set {need} instead")
    for key, minimum in ((need, 1), ("val_interval", 1), ("val_begin", 0)):
        value = args.get(key, 1 if key != need else None)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"train_cfg.{key}: expected an integer >= {minimum}, got {value!r}")
    return TrainSchedule(**args)


def build_model(cfg: Mapping | nn.Module) -> nn.Module:
    """Build a model from a ``MODELS`` config, or return a module as is."""
    if isinstance(cfg, nn.Module):
        return cfg
    return MODELS.build(cfg)


def check_world_size(accelerator: Any) -> None:
    """Fail loudly when a multi-process launch gave a single-process Accelerator.

    ``torchrun`` with a plain CPU ``Accelerator()`` starts N copies that each believe
    they are alone: duplicated data and N writers of the same checkpoints.

    Raises:
        LaunchError: ``WORLD_SIZE`` > 1 but ``accelerator.num_processes`` is 1.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and accelerator.num_processes == 1:
        raise LaunchError(
            f"launched with WORLD_SIZE={world}, but the Accelerator runs "
            f"{accelerator.num_processes} process: the processes would train independently. "
            "On CPU, launch with "
            "'accelerate launch --config_file launch_configs/cpu_2proc.yaml' (distributed_type "
            "MULTI_GPU + cpu) or set ACCELERATE_USE_CPU=1 under torchrun.")


def build_accelerator(settings: Mapping | Any, optim_wrapper: Any, project_dir: str,
                      log_with: list[str]) -> Any:
    """Create the run's Accelerator (or check a given one).

    Args:
        settings: An ``Accelerator`` (used as is) or a dict of ``Accelerator`` arguments.
        optim_wrapper: The wrapper or its config (an AMP wrapper sets mixed precision).
        project_dir: The work dir (trackers write there).
        log_with: Tracker names.

    Returns:
        The Accelerator. Without CUDA it runs on CPU; dataloaders use Accelerate's
        seedable sampler so that a resumed epoch sees the same batches.
    """
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration

    if isinstance(settings, Accelerator):
        check_world_size(settings)
        return settings
    kwargs = dict(to_plain(settings) or {})
    if not torch.cuda.is_available():
        kwargs.setdefault("cpu", True)
    loader_cfg = kwargs.pop("dataloader_config", None) or {}
    if isinstance(loader_cfg, Mapping):
        loader_cfg = DataLoaderConfiguration(**{"use_seedable_sampler": True, **loader_cfg})
    kwargs["dataloader_config"] = loader_cfg
    kwargs.setdefault("project_dir", project_dir)
    if log_with:
        kwargs.setdefault("log_with", log_with)
    accelerator = make_accelerator(optim_wrapper, **kwargs)
    check_world_size(accelerator)
    return accelerator


def build_schedulers(cfg: Any, optim_wrapper: Any, schedule: TrainSchedule,
                     epoch_length: int) -> list | dict[str, list]:
    """Build parameter schedulers as MMEngine's runner does (``end`` defaults to the run length).

    Args:
        cfg: A scheduler, a config dict, a list of either, a dict of lists (one per
            ``OptimWrapperDict`` member), or None.
        optim_wrapper: The ``OptimWrapper`` or ``OptimWrapperDict``.
        schedule: The train schedule.
        epoch_length: Iterations per epoch (per process), for ``convert_to_iter_based``.

    Returns:
        A list of schedulers, or a dict of lists for an ``OptimWrapperDict``.
    """
    if cfg is None:
        cfg = []
    return build_param_schedulers(cfg, optim_wrapper, epoch_length=epoch_length,
                                  max_epochs=schedule.max_epochs if schedule.by_epoch else None,
                                  max_iters=schedule.total_iters(epoch_length))
