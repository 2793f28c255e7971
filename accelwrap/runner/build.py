"""Building the runner's parts from config: accelerator, model, schedulers, scaled lr.

Each function takes a config value (dict, ``DictConfig`` or an object) and never
modifies it. The train schedule (``train_cfg``) is read by :mod:`accelwrap.runner.train_cfg`.

Example:
    >>> build_model(dict(type='MLPClassifier')).__class__.__name__
    'MLPClassifier'
"""

from __future__ import annotations

import copy
import inspect
import os
import secrets
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from accelwrap.errors import LaunchError
from accelwrap.optim import _accelerate_compat as glue
from accelwrap.optim.accelerator import make_accelerator
from accelwrap.optim.optimizer.builder import SINGLE_KEYS
from accelwrap.optim.scheduler import build_param_schedulers
from accelwrap.registry import OPTIMIZERS, to_plain
from accelwrap.runner.models import MODELS
from accelwrap.runner.train_cfg import TrainSchedule

__all__ = ["build_accelerator", "build_model", "build_schedulers", "scale_lr", "scheduler_kinds"]

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
    fsdp = fsdp_requested(kwargs)
    if not torch.cuda.is_available():
        if not glue.deepspeed_requested():  # cpu=True would make Accelerate drop DeepSpeed
            kwargs.setdefault("cpu", True)
        if fsdp:
            _enable_cpu_fsdp(kwargs)
    loader_cfg = kwargs.pop("dataloader_config", None) or {}
    if isinstance(loader_cfg, Mapping):
        loader_cfg = DataLoaderConfiguration(**{"use_seedable_sampler": True, **loader_cfg})
    kwargs["dataloader_config"] = loader_cfg
    kwargs.setdefault("project_dir", project_dir)
    if log_with:
        kwargs.setdefault("log_with", log_with)
    accelerator = make_accelerator(optim_wrapper, **kwargs)
    check_world_size(accelerator)
    if fsdp:
        _check_fsdp(accelerator)
    return accelerator


def fsdp_requested(settings: Mapping[str, Any]) -> bool:
    """Whether the launch asks for FSDP: ``accelerate launch`` with an FSDP config
    (``ACCELERATE_USE_FSDP=true``) or an ``fsdp_plugin`` among the Accelerator's arguments.

    Example:
        >>> from_env = os.environ.get('ACCELERATE_USE_FSDP') == 'true'
        >>> fsdp_requested({'fsdp_plugin': None}) == from_env
        True
    """
    env = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    return env or settings.get("fsdp_plugin") is not None


def _fsdp_version(settings: Mapping[str, Any]) -> int:
    plugin = settings.get("fsdp_plugin")
    version = getattr(plugin, "fsdp_version", None) or os.environ.get("FSDP_VERSION", "1")
    return int(version)


def _enable_cpu_fsdp(settings: Mapping[str, Any]) -> None:
    """Let Accelerate build FSDP2 over gloo on a machine without CUDA.

    Accelerate applies its FSDP plugin only to a GPU-like distributed type and, on the CPU,
    silently gives DDP. FSDP2 (``fully_shard``) itself runs on gloo, so the CPU process
    state is marked ``MULTI_GPU`` before the Accelerator is created (its device stays the
    CPU); :func:`_check_fsdp` then proves that FSDP was built.

    Raises:
        LaunchError: FSDP1 is asked for (it refuses the CPU).
    """
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType

    version = _fsdp_version(settings)
    if version != 2:
        raise LaunchError(
            f"FSDP on a machine without CUDA: fsdp_version {version} (FSDP1) needs GPUs. Set "
            "fsdp_config.fsdp_version: 2 in the launch config (launch_configs/fsdp.yaml does), "
            "or launch with launch_configs/cpu_2proc.yaml for DDP on the CPU")
    state = PartialState(cpu=True)
    if state.distributed_type in (DistributedType.NO, DistributedType.MULTI_CPU):
        state.distributed_type = DistributedType.MULTI_GPU


def _check_fsdp(accelerator: Any) -> None:
    """Refuse to train with anything but FSDP once FSDP was asked for.

    Raises:
        LaunchError: Accelerate built another engine (it would be DDP, silently).
    """
    from accelerate.utils import DistributedType

    if accelerator.distributed_type != DistributedType.FSDP:
        raise LaunchError(
            f"the launch asks for FSDP (ACCELERATE_USE_FSDP / fsdp_plugin), but Accelerate built "
            f"{accelerator.distributed_type} on device {accelerator.device}; refusing to train "
            "unsharded. On the CPU, FSDP2 needs a launcher that starts the processes "
            "(accelerate launch --config_file launch_configs/fsdp.yaml or torchrun)")


def shared_random_seed(accelerator: Any) -> int:
    """A random seed drawn on the main process and shared by every process.

    MMEngine's ``randomness.seed: None``: a fresh seed each run, the same on every rank.

    Args:
        accelerator: The run's Accelerator.

    Returns:
        The seed (logged by the runner's start banner).

    Example:
        >>> class One: is_main_process, num_processes = True, 1
        >>> 0 <= shared_random_seed(One()) < 2 ** 31
        True
    """
    from accelerate.utils import broadcast_object_list

    seed = [secrets.randbelow(2 ** 31) if accelerator.is_main_process else None]
    if accelerator.num_processes > 1:
        broadcast_object_list(seed)
    return int(seed[0])


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


def _scaled_optimizer(optimizer: Any, ratio: float, path: str) -> Any:
    """An optimizer config whose ``lr`` (or the optimizer's default lr) is scaled by ``ratio``."""
    if not isinstance(optimizer, Mapping):
        return optimizer
    lr = optimizer.get("lr")
    if lr is None and isinstance(optimizer.get("type"), str) and optimizer["type"] in OPTIMIZERS:
        parameter = inspect.signature(OPTIMIZERS.get(optimizer["type"])).parameters.get("lr")
        lr = None if parameter is None else parameter.default  # MMEngine scales it too
    if not isinstance(lr, (int, float)) or isinstance(lr, bool):
        raise ValueError(f"auto_scale_lr: {path}.lr is {lr!r}; write a number to scale")
    return {**optimizer, "lr": lr * ratio}


def scale_lr(cfg: Mapping, batch_size: int, world_size: int) -> tuple[dict, str | None]:
    """Apply ``auto_scale_lr`` as MMEngine's runner does: every optimizer lr times the ratio.

    MMEngine multiplies every parameter group's lr by ``batch_size * world_size /
    base_batch_size`` after building the optimizer and before building the schedulers;
    scaling each optimizer config's ``lr`` gives the same groups (paramwise multipliers
    apply to it) and the same scheduler starting values. Absolute scheduler values
    (``eta_min``, OneCycle's ``eta_max``) are not scaled, as in MMEngine.

    Args:
        cfg: The plain config (not modified).
        batch_size: The per-process batch size of the train dataloader.
        world_size: The number of processes.

    Returns:
        ``(config, log line)``: a new config with the section consumed, and MMEngine's
        log sentence (None when scaling is off or the config has no ``auto_scale_lr``).

    Raises:
        ValueError: ``enable`` is true but ``base_batch_size`` is missing or not positive.

    Example:
        >>> cfg = {'optim_wrapper': {'optimizer': {'type': 'SGD', 'lr': 0.02}},
        ...        'auto_scale_lr': {'enable': True, 'base_batch_size': 16}}
        >>> new, line = scale_lr(cfg, batch_size=4, world_size=2)
        >>> new['optim_wrapper']['optimizer']['lr'], 'auto_scale_lr' in new
        (0.01, False)
        >>> print(line)
        LR is set based on batch size of 16 and the current batch size is 8. Scaling the \
original LR by 0.5.
    """
    out = {k: copy.deepcopy(v) for k, v in to_plain(cfg).items() if k != "auto_scale_lr"}
    spec = to_plain(cfg.get("auto_scale_lr")) or {}
    if not spec.get("enable", False):
        return out, None
    base = spec.get("base_batch_size")
    if not isinstance(base, int) or isinstance(base, bool) or base < 1:
        raise ValueError("auto_scale_lr.base_batch_size: expected a positive integer, "
                         f"got {base!r}")
    real = batch_size * world_size
    ratio = float(real) / float(base)
    wrapper = out.get("optim_wrapper") or {}
    if any(key in wrapper for key in SINGLE_KEYS):
        if "optimizer" in wrapper:
            wrapper["optimizer"] = _scaled_optimizer(wrapper["optimizer"], ratio,
                                                     "optim_wrapper.optimizer")
    else:
        for name, member in wrapper.items():
            if isinstance(member, Mapping) and "optimizer" in member:
                member["optimizer"] = _scaled_optimizer(member["optimizer"], ratio,
                                                        f"optim_wrapper.{name}.optimizer")
    return out, (f"LR is set based on batch size of {base} and the current batch size is "
                 f"{real}. Scaling the original LR by {ratio}.")


def scheduler_kinds(cfg: Any, schedulers: Any) -> list[str]:
    """How each built scheduler counts, in the runner's flat order.

    ``'converted'`` (by-epoch, ``convert_to_iter_based``), ``'epoch'`` (stepped per epoch)
    or ``'iter'`` (stepped per iteration).

    Args:
        cfg: The ``param_scheduler`` config the schedulers were built from.
        schedulers: What :func:`~accelwrap.runner.build.build_schedulers` returned.

    Example:
        >>> scheduler_kinds([dict(type='LinearLR', by_epoch=False),
        ...                  dict(type='CosineAnnealingLR', convert_to_iter_based=True)], [1, 2])
        ['iter', 'converted']
    """
    plain = to_plain(cfg) if cfg is not None else []
    if isinstance(schedulers, Mapping):
        per_member = isinstance(plain, Mapping) and "type" not in plain
        lists = [(plain.get(name, []) if per_member else plain, built)
                 for name, built in schedulers.items()]
    else:
        lists = [(plain, schedulers)]
    kinds = []
    for items, built in lists:
        items = list(items) if isinstance(items, (list, tuple)) else [items]
        for item, scheduler in zip(items, built):
            if isinstance(item, Mapping):
                by_epoch = item.get("by_epoch", True)
                converted = by_epoch and item.get("convert_to_iter_based", False)
                kinds.append("converted" if converted else "epoch" if by_epoch else "iter")
            else:
                kinds.append("epoch" if getattr(scheduler, "by_epoch", True) else "iter")
    return kinds
