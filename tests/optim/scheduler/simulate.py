"""Test helpers: build the same schedulers in MMEngine and accelwrap and run them side by side.

A run is stepped as MMEngine's ``ParamSchedulerHook`` does: iteration-based schedulers
after every iteration, epoch-based ones after every epoch, ``need_val_args`` ones after
validation with a metrics dict. Every row records lr, momentum (``betas[0]`` for Adam)
and weight decay of every param group (and the wrapper's base group, if any).
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Iterable
from typing import Any

import mmengine.optim  # noqa: F401 - registers MMEngine's schedulers
import torch
from mmengine.optim import OptimWrapper as MMOptimWrapper
from mmengine.registry import PARAM_SCHEDULERS as MM_SCHEDULERS

from accelwrap.optim import OptimWrapper
from accelwrap.optim.scheduler import build_param_schedulers, step_param_schedulers

EPOCHS, EPOCH_LENGTH = 6, 5
RTOL, ATOL = 1e-9, 1e-15
METRICS = [1.0, 0.8, 0.81, 0.82, 0.5, 0.6, 0.7, 0.7]


def make_optimizer(kind: str, groups: int) -> torch.optim.Optimizer:
    """SGD or AdamW with 1 or 2 param groups; the second group has its own values."""
    params = [torch.nn.Parameter(torch.zeros(2)) for _ in range(groups)]
    if groups == 1:
        param_groups = [{"params": params}]
    else:
        second = {"params": [params[1]], "lr": 0.05, "weight_decay": 0.03}
        second.update({"momentum": 0.8} if kind == "sgd" else {"betas": (0.8, 0.99)})
        param_groups = [{"params": [params[0]]}, second]
    if kind == "sgd":
        return torch.optim.SGD(param_groups, lr=0.1, momentum=0.9, weight_decay=1e-2)
    return torch.optim.AdamW(param_groups, lr=0.1, betas=(0.9, 0.999), weight_decay=1e-2)


def make_target(lib: str, kind: str, groups: int, wrapped: bool):
    """(torch optimizer, scheduler target) for ``lib`` ('mm' or 'aw')."""
    optimizer = make_optimizer(kind, groups)
    if not wrapped:
        return optimizer, optimizer
    return optimizer, (MMOptimWrapper if lib == "mm" else OptimWrapper)(optimizer)


def record(target) -> list[tuple[float, float, float]]:
    """(lr, momentum, weight_decay) of every group the scheduler sees."""
    rows = []
    for group in target.param_groups:
        momentum = group["betas"][0] if "betas" in group else group["momentum"]
        rows.append((float(group["lr"]), float(momentum), float(group["weight_decay"])))
    return rows


def run(schedulers: Iterable, target, epochs: int = EPOCHS, epoch_length: int = EPOCH_LENGTH,
        metrics: list[float] = METRICS, start: int = 0) -> list:
    """Step ``schedulers`` like MMEngine's ParamSchedulerHook; one row per iteration."""
    schedulers = list(schedulers)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for epoch in range(start, epochs):
            for _ in range(epoch_length):
                rows.append(record(target))
                step_param_schedulers(schedulers, "iter")
            step_param_schedulers(schedulers, "epoch")
            step_param_schedulers(schedulers, "val", {"loss": metrics[epoch]})
    rows.append(record(target))
    return rows


def build_mm(cfgs: list[dict], target, epochs: int = EPOCHS, epoch_length: int = EPOCH_LENGTH):
    """MMEngine's schedulers, built as its Runner does (end defaults to the run length)."""
    schedulers = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for cfg in cfgs:
            cfg = copy.deepcopy(cfg)
            cfg.setdefault("end", epochs if cfg.get("by_epoch", True) else epochs * epoch_length)
            schedulers.append(MM_SCHEDULERS.build(
                cfg, default_args=dict(optimizer=target, epoch_length=epoch_length)))
    return schedulers


def build_aw(cfgs: list[dict], target, epochs: int = EPOCHS, epoch_length: int = EPOCH_LENGTH):
    """accelwrap's schedulers through ``build_param_schedulers``."""
    return build_param_schedulers(cfgs, target, epoch_length=epoch_length, max_epochs=epochs,
                                  max_iters=epochs * epoch_length)


def both(cfgs: list[dict], kind: str, groups: int, wrapped: bool) -> tuple[list, list]:
    """Rows of the same run in MMEngine and in accelwrap."""
    _, mm_target = make_target("mm", kind, groups, wrapped)
    _, aw_target = make_target("aw", kind, groups, wrapped)
    mm_rows = run(build_mm(cfgs, mm_target), mm_target)
    aw_rows = run(build_aw(cfgs, aw_target), aw_target)
    return mm_rows, aw_rows


def assert_rows_close(expected: list, actual: list, rtol: float = RTOL) -> None:
    """Every value of every group at every step within ``rtol`` (relative)."""
    assert len(expected) == len(actual), (len(expected), len(actual))
    names = ("lr", "momentum", "weight_decay")
    for step, (want_row, got_row) in enumerate(zip(expected, actual)):
        assert len(want_row) == len(got_row), f"step {step}: group count"
        for group, (want, got) in enumerate(zip(want_row, got_row)):
            for name, w, g in zip(names, want, got):
                if not math.isclose(w, g, rel_tol=rtol, abs_tol=ATOL):
                    raise AssertionError(f"step {step}, group {group}, {name}: expected {w!r}, "
                                         f"got {g!r}")


def stepped_lrs(opt: torch.optim.Optimizer, sched: Any, steps: int) -> list[float]:
    """The first group's lr before each of ``steps`` optimizer + scheduler steps."""
    values = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(steps):
            values.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
    return values
