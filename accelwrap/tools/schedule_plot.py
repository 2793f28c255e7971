"""The picture of ``accelwrap schedule``: one panel per (optimizer, hyperparameter).

Each panel plots one line per distinct param-group series (groups with identical
values share a line), shades every scheduler's ``[begin, end)`` window, marks its
milestones, and draws the epoch boundaries; values spanning more than a factor of 50
get a log axis. matplotlib is optional (the ``plot``
extra); without it :func:`plot` raises :class:`MissingMatplotlib` saying what to
install.

Example:
    >>> # plot(simulate(cfg), 'lr.png', title='configs/digits_sgd_multistep.yaml')
"""

from __future__ import annotations

from accelwrap.tools.schedule_trace import Trace, Window

__all__ = ["MissingMatplotlib", "panels", "plot"]

_MAX_EPOCH_LINES = 60
_LOG_RATIO = 50  # a panel spanning more than this factor gets a log y axis


class MissingMatplotlib(ImportError):
    """matplotlib is not installed; the message names the install command."""


def _split(key: str, members: set[str]) -> tuple[str, str, str]:
    """``'generator.lr.1'`` -> ``('generator', 'lr', '1')``; ``'lr'`` -> ``('', 'lr', '')``."""
    parts = key.split(".")
    member = parts.pop(0) if len(parts) > 1 and parts[0] in members else ""
    name = parts[0]
    group = parts[1] if len(parts) > 1 else ""
    return member, name, group


def panels(trace: Trace) -> dict[tuple[str, str], dict[str, list[float]]]:
    """Group the trace's columns into panels, keeping one line per distinct series.

    Only scheduled hyperparameters get a panel (``base_lr`` joins the ``lr`` panel);
    with no scheduler at all the ``lr`` panels are shown.

    Args:
        trace: From :func:`~accelwrap.tools.schedule.simulate`.

    Returns:
        ``(member, hyperparameter) -> {line label: values}``.
    """
    members = set(trace.members) - {""}
    scheduled = {(w.member, w.param_name) for w in trace.windows} or \
        {(m, "lr") for m in trace.members}
    out: dict[tuple[str, str], dict[str, list[float]]] = {}
    for key, values in trace.columns.items():
        member, name, group = _split(key, members)
        panel = (member, "lr" if name == "base_lr" else name)
        if panel not in scheduled:
            continue
        lines = out.setdefault(panel, {})
        label = "base" if name == "base_lr" else f"group {group}" if group else name
        same = next((old for old, seen in lines.items() if seen == values), None)
        if same is None:
            lines[label] = values
        elif label != "base":
            lines[f"{same}, {group}"] = lines.pop(same)
    return out


def _load_pyplot():
    try:
        import matplotlib
    except ImportError as err:
        raise MissingMatplotlib("writing a PNG needs matplotlib: pip install matplotlib "
                                "(or pip install 'accelwrap[plot]'); --csv and the summary "
                                "work without it") from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _decorate(ax, trace: Trace, windows: list[Window]) -> None:
    epochs = trace.max_iters // trace.epoch_length
    if 1 < epochs <= _MAX_EPOCH_LINES:
        for e in range(1, epochs + (trace.max_iters % trace.epoch_length > 0)):
            ax.axvline(e * trace.epoch_length, color="0.85", lw=0.6, zorder=0)
    for index, w in enumerate(windows):
        color = f"C{(index + 3) % 10}"
        ax.axvspan(w.begin, w.end, color=color, alpha=0.08, zorder=0)
        ax.axvline(w.begin, color=color, lw=0.8, ls="--")
        if w.end < trace.max_iters:
            ax.axvline(w.end, color=color, lw=0.8, ls="--")
        for mark in w.marks:
            ax.axvline(mark, color=color, lw=0.8, ls=":")
        label = w.name + (" (held)" if w.held else "")
        ax.text(w.begin, 1.0 - 0.09 * index, f" {label}", transform=ax.get_xaxis_transform(),
                color=color, fontsize=7, va="top")


def plot(trace: Trace, path: str, title: str = "") -> None:
    """Write the schedule picture to ``path`` (PNG).

    Args:
        trace: From :func:`~accelwrap.tools.schedule.simulate`.
        path: The image file.
        title: Figure title (e.g. the config path).

    Raises:
        MissingMatplotlib: matplotlib is not installed.
    """
    plt = _load_pyplot()
    groups = panels(trace)
    fig, axes = plt.subplots(len(groups), 1, figsize=(9, 2.6 * len(groups) + 0.6),
                             sharex=True, squeeze=False)
    steps = list(range(trace.max_iters))
    for ax, ((member, name), lines) in zip(axes[:, 0], groups.items()):
        for label, values in lines.items():
            ax.plot(steps, values, lw=1.4, label=label,
                    ls="--" if label == "base" else "-")
        _decorate(ax, trace, [w for w in trace.windows
                              if w.member == member and w.param_name == name])
        ax.set_ylabel(f"{member}.{name}" if member else name)
        low = min(min(v) for v in lines.values())
        if low > 0 and max(max(v) for v in lines.values()) / low >= _LOG_RATIO:
            ax.set_yscale("log")
        if len(lines) > 1:
            ax.legend(fontsize=7, loc="center right")
        ax.grid(alpha=0.3, lw=0.5)
    axes[-1, 0].set_xlabel(f"iteration ({trace.epoch_length} per epoch; epochs in grey)")
    fig.suptitle(title or "parameter schedule", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
