"""``accelwrap schedule``: every scheduled hyperparameter of a run, before training it.

The optimizer wrapper and the schedulers are built by the runner's own functions
(``parse_train_cfg``, ``build_optim_wrapper``, ``build_schedulers``) over the config's
model on the ``meta`` device, then stepped through the whole run in the runner's order:
iteration-based schedulers after every iteration, epoch-based ones after every epoch
(only when training is epoch-based). Nothing trains. ``ReduceOnPlateau*`` schedulers
react to validation metrics, so the preview holds their values.

The value recorded for iteration ``i`` is the one in effect while iteration ``i`` runs
(MMEngine logs the learning rate at the same point, before the iteration). Columns
are named like the runner's ``scalars.jsonl`` keys (``lr``, ``lr.1``, ``base_lr``,
``generator.momentum``, ...), so the two can be compared directly.

Example:
    >>> cfg = {'model': {'type': 'MLPClassifier'}, 'train_cfg': {'max_epochs': 2},
    ...        'optim_wrapper': {'optimizer': {'type': 'SGD', 'lr': 1.0}},
    ...        'param_scheduler': [{'type': 'MultiStepLR', 'milestones': [1], 'gamma': 0.5}]}
    >>> trace = simulate(cfg, epoch_length=3)
    >>> trace.columns['lr']
    [1.0, 1.0, 1.0, 0.5, 0.5, 0.5]
"""

from __future__ import annotations

import csv
import sys
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from torch import nn

from accelwrap.optim.optimizer.builder import SINGLE_KEYS, build_optim_wrapper
from accelwrap.optim.optimizer.optimizer_wrapper_dict import named_members
from accelwrap.optim.scheduler import step_param_schedulers
from accelwrap.runner.build import build_schedulers
from accelwrap.runner.data import build_dataloader
from accelwrap.runner.log_output import flatten_values
from accelwrap.runner.train_cfg import parse_train_cfg
from accelwrap.tools.common import build_model_cheaply, load_plain, render_table, require
from accelwrap.tools.schedule_plot import MissingMatplotlib, plot
from accelwrap.tools.schedule_trace import Trace, Window

__all__ = ["STAND_IN_NOTE", "run_schedule", "simulate", "summary", "write_csv"]

# get_lr()/get_momentum() keys; other scheduled param names are read from the groups.
_WRAPPER_KEYS = ("lr", "base_lr", "momentum")


def _scheduler_lists(schedulers: list | dict, members: Mapping[str, Any]) -> dict[str, list]:
    if isinstance(schedulers, dict):
        return {name: list(schedulers.get(name, [])) for name in members}
    return {next(iter(members)): list(schedulers)}


def _scaled(value: int, by_epoch: bool, epoch_length: int, limit: int) -> int:
    return min(value * epoch_length if by_epoch else value, limit)


def _marks(scheduler: Any) -> list[int]:
    """Milestones / step boundaries in scheduler units, relative to ``begin``."""
    schedule = getattr(scheduler, "schedule", None)
    milestones = getattr(schedule, "milestones", None)
    if milestones:
        return list(milestones)
    step = getattr(schedule, "step_size", None)
    span = min(scheduler.end, 10**6) - scheduler.begin
    return list(range(step, span, step)) if step else []


def _window(member: str, scheduler: Any, epoch_length: int, max_iters: int) -> Window:
    by_epoch = bool(scheduler.by_epoch)
    begin = _scaled(scheduler.begin, by_epoch, epoch_length, max_iters)
    end = _scaled(scheduler.end, by_epoch, epoch_length, max_iters)
    marks = tuple(m for m in (_scaled(scheduler.begin + k, by_epoch, epoch_length, max_iters)
                              for k in _marks(scheduler)) if begin < m < end)
    return Window(member, type(scheduler).__name__, scheduler.param_name, begin, end, marks,
                  held=bool(getattr(scheduler, "need_val_args", False)))


def _snapshot(members: Mapping[str, Any], extra: Mapping[str, set[str]]) -> dict[str, float]:
    """The runner's logged keys (lr, momentum, base_lr) plus other scheduled group keys."""
    values: dict[str, float] = {}
    for name, wrapper in members.items():
        prefix = f"{name}." if name else ""
        found = {**wrapper.get_lr(), **wrapper.get_momentum()}
        found.update({key: [group[key] for group in wrapper.param_groups]
                      for key in sorted(extra.get(name, ()))})
        values.update({prefix + k: v for k, v in flatten_values(found).items()})
    return values


def _build(cfg: Mapping[str, Any], epoch_length: int | None,
           model: nn.Module | None) -> tuple[Any, Any, Any, int]:
    """The schedule, wrapper, schedulers and epoch length, built as the runner builds them."""
    schedule = parse_train_cfg(cfg["train_cfg"])
    if epoch_length is None:
        require(cfg, "train_dataloader", command="schedule (or pass --epoch-length)")
        epoch_length = len(build_dataloader(cfg["train_dataloader"], "train_dataloader"))
    if not isinstance(epoch_length, int) or epoch_length < 1:
        raise ValueError(f"epoch length: expected a positive number of iterations, "
                         f"got {epoch_length!r}")
    optim_cfg = cfg["optim_wrapper"]
    if model is None and "model" not in cfg:
        model, optim_cfg = _stand_in(optim_cfg)
    model = build_model_cheaply(cfg["model"]) if model is None else model
    wrapper = build_optim_wrapper(model, optim_cfg)
    schedulers = build_schedulers(cfg.get("param_scheduler"), wrapper, schedule, epoch_length)
    return schedule, wrapper, schedulers, epoch_length


#: What ``accelwrap schedule`` says about a config without ``model``.
STAND_IN_NOTE = ("no model in the config: the schedule is that of the optimizer's own lr on a "
                 "stand-in parameter (paramwise_cfg and constructor are not applied)")


def _stand_in(optim_cfg: Mapping[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
    """A one-parameter model per wrapper member, and the config without paramwise rules."""
    def plain(member: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in member.items() if k not in ("paramwise_cfg", "constructor")}

    if any(key in optim_cfg for key in SINGLE_KEYS):
        return nn.Linear(1, 1, bias=False), plain(optim_cfg)
    members = {name: plain(member) for name, member in optim_cfg.items()}
    return nn.ModuleDict({name: nn.Linear(1, 1, bias=False) for name in members}), members


def simulate(cfg: Mapping[str, Any], epoch_length: int | None = None,
             model: nn.Module | None = None) -> Trace:
    """Step the config's schedulers through the whole run and record every scheduled value.

    Args:
        cfg: A runner config (``model``, ``optim_wrapper``, ``param_scheduler``,
            ``train_cfg`` and, unless ``epoch_length`` is given, ``train_dataloader``).
            Without ``model`` (a schedule file), a stand-in parameter carries the
            optimizer's own settings (:data:`STAND_IN_NOTE`).
        epoch_length: Iterations per epoch; default: the length of the train dataloader.
        model: A built model to use instead of ``cfg['model']``.

    Returns:
        The trace.
    """
    schedule, wrapper, schedulers, epoch_length = _build(cfg, epoch_length, model)
    members = named_members(wrapper)
    lists = _scheduler_lists(schedulers, members)
    extra = {name: {s.param_name for s in group} - set(_WRAPPER_KEYS)
             for name, group in lists.items()}
    max_iters = schedule.total_iters(epoch_length)
    trace = Trace(epoch_length, max_iters, list(members))
    trace.windows = [_window(name, s, epoch_length, max_iters)
                     for name, group in lists.items() for s in group]
    with warnings.catch_warnings():
        # Nothing trains, so no optimizer steps before the schedulers do.
        warnings.filterwarnings("ignore", message=r"Detected call of `scheduler\.step\(\)`",
                                category=UserWarning)
        for index in range(max_iters):
            for key, value in _snapshot(members, extra).items():
                trace.columns.setdefault(key, []).append(value)
            # The runner's stepping rule; plateau schedulers also wait for validation
            # metrics, which a preview does not have, so their values are held.
            _mark_updates(members, index + 1, max_iters)
            step_param_schedulers(lists, "iter")
            if schedule.by_epoch and (index + 1) % epoch_length == 0:
                step_param_schedulers(lists, "epoch")
    return trace


def _mark_updates(members: Mapping[str, Any], iteration: int, max_iters: int) -> None:
    """The preview's run skips no update: iteration ``iteration`` (1-based) applies one
    where it ends an accumulation window (what ``on: updates`` schedulers tick on)."""
    for wrapper in members.values():
        counts = getattr(wrapper, "_accumulative_counts", 1)
        wrapper.last_update_applied = iteration % counts == 0 or iteration == max_iters


def write_csv(trace: Trace, path: str) -> None:
    """Write one row per iteration: ``iter``, ``epoch``, then every column.

    Args:
        trace: From :func:`simulate`.
        path: The CSV file to write.
    """
    keys = list(trace.columns)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["iter", "epoch", *keys])
        for index in range(trace.max_iters):
            writer.writerow([index, index // trace.epoch_length,
                             *(repr(trace.columns[k][index]) for k in keys)])


def _events(trace: Trace) -> list[tuple[int, str]]:
    """Iterations worth a line in the summary, each with what happens there."""
    events: dict[int, list[str]] = {0: ["start"]}

    def add(at: int, what: str) -> None:
        if 0 <= at < trace.max_iters and what not in events.setdefault(at, []):
            events[at].append(what)

    for w in trace.windows:
        who = f"{w.member + ' ' if w.member else ''}{w.name}"
        if w.begin > 0:
            add(w.begin, f"{who} begins")
        for mark in w.marks:
            add(mark, f"{who} milestone")
        add(w.end, f"{who} ends" + (" (warm-up done)" if w.begin == 0 else ""))
    add(trace.max_iters - 1, "last iteration")
    return [(at, "; ".join(what)) for at, what in sorted(events.items())]


def _distinct_columns(trace: Trace) -> list[str]:
    """Columns whose series differ from every earlier one (``lr.3`` equal to ``lr.0`` is
    dropped)."""
    kept: list[str] = []
    for key, values in trace.columns.items():
        if not any(trace.columns[k] == values and k.split(".")[0] == key.split(".")[0]
                   for k in kept):
            kept.append(key)
    return kept


def summary(trace: Trace) -> str:
    """A short text report: the run's length, the schedulers, values at key iterations.

    Args:
        trace: From :func:`simulate`.

    Returns:
        The text.
    """
    epochs = trace.max_iters / trace.epoch_length
    lines = [f"{trace.max_iters} iterations = {epochs:g} epochs x {trace.epoch_length} iterations"]
    for w in trace.windows:
        held = " (held: it follows validation metrics)" if w.held else ""
        target = f"{w.member}.{w.param_name}" if w.member else w.param_name
        lines.append(f"  {w.name:<28} {target:<24} iterations [{w.begin}, {w.end}){held}")
    keys = _distinct_columns(trace)
    header = ["iter", "epoch", "event", *keys]
    body = [[str(i), str(i // trace.epoch_length), what,
             *(f"{trace.columns[k][i]:.6g}" for k in keys)] for i, what in _events(trace)]
    return "\n".join([*lines, "", *render_table(header, body, underline=False)])


def run_schedule(path: str, overrides: Iterable[str] = (), out: str | None = None,
                 csv: str | None = None, epoch_length: int | None = None) -> int:
    """The ``accelwrap schedule`` command.

    Args:
        path: The config file.
        overrides: Dotted ``key=value`` overrides.
        out: PNG to write (needs matplotlib).
        csv: CSV to write.
        epoch_length: Iterations per epoch instead of the train dataloader's length.

    Returns:
        0 on success, 1 when a plot was asked for and matplotlib is missing (the
        summary and the CSV are still written).
    """
    cfg = load_plain(path, overrides)
    require(cfg, "optim_wrapper", "train_cfg", command="schedule")
    if "model" not in cfg:
        print(f"accelwrap schedule: note: {STAND_IN_NOTE}", file=sys.stderr)
    trace = simulate(cfg, epoch_length)
    print(summary(trace))
    if csv:
        write_csv(trace, csv)
        print(f"wrote {csv}")
    if out:
        try:
            plot(trace, out, title=path)
        except MissingMatplotlib as err:
            print(f"accelwrap schedule: {err}", file=sys.stderr)
            return 1
        print(f"wrote {out}")
    return 0
