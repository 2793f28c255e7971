"""The text log of a run: its folder, the ``accelwrap`` logger's handlers, the banner, timing.

Each run writes into its own folder ``<work_dir>/<YYYYmmdd_HHMMSS>/``: the text log
``<YYYYmmdd_HHMMSS>.log``, ``scalars.jsonl`` and the TensorBoard events. A resumed run
continues the folder of the run it resumes (its name is stored in the checkpoint's
``runner_state.json``, key ``run_dir``); a new run never appends to another's.

Every ``logger.interval`` iterations one line, as MMEngine writes it::

    Epoch(train) [3][200/5005]  lr: 1.0000e-02  eta: 0:12:34  time: 0.1234  data_time: 0.0123  memory: 1234  loss: 0.4567

Example:
    >>> train_line({'lr': 0.01, 'loss': 0.45671}, epoch=2, iteration=110, epoch_length=50,
    ...            max_iters=200, by_epoch=True, in_epoch=10,
    ...            timing={'eta': 12.7, 'time': 0.1234, 'data_time': 0.0123, 'memory': 1234})
    'Epoch(train) [3][10/50]  lr: 1.0000e-02  eta: 0:00:12  time: 0.1234  data_time: 0.0123  memory: 1234  loss: 0.4567'
"""  # noqa: E501

from __future__ import annotations

import datetime
import json
import logging
import logging.handlers
import platform
import re
import resource
import sys
import time
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from accelwrap.runner.checkpoint_layout import STATE_FILE

__all__ = ["EVERY_RANK", "RUN_DIR_KEY", "IterTimer", "banner", "configure_logging",
           "latest_run_dir", "memory_mb", "new_run_dir", "open_log_file", "release_logging",
           "saved_state", "test_line", "train_line", "val_line"]

RUN_DIR_KEY = "run_dir"
_STAMP = "%Y%m%d_%H%M%S"
_STAMP_RE = re.compile(r"^\d{8}_\d{6}(_\d+)?$")
_FORMAT = "%(asctime)s - accelwrap - %(levelname)s - %(message)s"
_DATEFMT = "%Y/%m/%d %H:%M:%S"


# ------------------------------------------------------------------ run folders
def new_run_dir(work_dir: str | Path) -> Path:
    """A fresh timestamped folder name under ``work_dir`` (not created; suffixed if taken)."""
    stamp = datetime.datetime.now().strftime(_STAMP)
    candidate, n = Path(work_dir) / stamp, 1
    while candidate.exists():
        candidate, n = Path(work_dir) / f"{stamp}_{n}", n + 1
    return candidate


def latest_run_dir(work_dir: str | Path) -> Path | None:
    """The newest run folder under ``work_dir`` (None if there is none).

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> (root / '20240101_120000').mkdir(); (root / '20240102_090000').mkdir()
        >>> latest_run_dir(root).name
        '20240102_090000'
    """
    root = Path(work_dir)
    runs = [p for p in root.iterdir() if p.is_dir() and _STAMP_RE.match(p.name)] \
        if root.is_dir() else []
    return max(runs, key=lambda p: (p.name[:15], int(p.name[16:] or 0)), default=None)


def saved_state(checkpoint: str | Path | None) -> dict[str, Any]:
    """The ``runner_state.json`` of a checkpoint folder (``{}`` if none or unreadable)."""
    if checkpoint is None:
        return {}
    path = Path(checkpoint) / STATE_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


# ------------------------------------------------------------------ handlers
#: ``extra=`` of a warning that every process prints, not only the main one: it is
#: about that process alone (``logger.warning('...', extra=EVERY_RANK)``).
EVERY_RANK = {"every_rank": True}


def _own_warnings_and_errors(record: logging.LogRecord) -> bool:
    """The stderr filter of other processes than the main one."""
    return record.levelno >= logging.ERROR or getattr(record, "every_rank", False)


def configure_logging(log_file: str | Path | None = None, main: bool = True
                      ) -> list[logging.Handler]:
    """Give the ``accelwrap`` logger a stderr handler (once) and a handler for ``log_file``.

    Nothing is configured by ``import accelwrap``; the Runner and ``accelwrap train`` call
    this. The stderr handler is skipped when the application already configured the root
    logger (its handlers get the records). Other processes than the main one log to no
    file, and on stderr only errors and the warnings about that process alone (logged
    with ``extra=EVERY_RANK``): the rest, the same on every process, shows once (MMEngine
    too shows only errors of other ranks).

    Args:
        log_file: The run's text log (appended to), or None.
        main: Whether this is the main process.

    Returns:
        The handlers added for ``log_file`` (hand them to :func:`release_logging`). The
        file is written only once :func:`open_log_file` is called: until then records
        wait in memory, so a run that fails before it starts (a refused checkpoint)
        leaves no trace in the folder.
    """
    log = logging.getLogger("accelwrap")
    if log.level == logging.NOTSET or log.level > logging.INFO:
        log.setLevel(logging.INFO)
    formatter = logging.Formatter(_FORMAT, _DATEFMT)
    if not logging.getLogger().handlers and not any(
            getattr(h, "_accelwrap_stderr", False) for h in log.handlers):
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(formatter)
        stream.setLevel(logging.INFO if main else logging.WARNING)
        if not main:
            stream.addFilter(_own_warnings_and_errors)
        stream._accelwrap_stderr = True  # type: ignore[attr-defined]
        log.addHandler(stream)
    if log_file is None or not main:
        return []
    pending = logging.handlers.MemoryHandler(capacity=10**6, flushLevel=logging.CRITICAL + 1)
    pending.setLevel(logging.INFO)
    pending._accelwrap_file = Path(log_file)  # type: ignore[attr-defined]
    log.addHandler(pending)
    return [pending]


def open_log_file(handlers: list[logging.Handler]) -> list[logging.Handler]:
    """Write the records held by :func:`configure_logging`'s handlers to the file; log there.

    Returns:
        The handlers now in place (hand them to :func:`release_logging`).
    """
    log = logging.getLogger("accelwrap")
    out: list[logging.Handler] = []
    for pending in handlers:
        path = getattr(pending, "_accelwrap_file", None)
        if path is None:
            out.append(pending)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, mode="a", encoding="utf-8")
        handler.setFormatter(logging.Formatter(_FORMAT, _DATEFMT))
        handler.setLevel(logging.INFO)
        for record in pending.buffer:
            handler.handle(record)
        log.removeHandler(pending)
        pending.buffer.clear()
        pending.close()
        log.addHandler(handler)
        out.append(handler)
    return out


def release_logging(handlers: list[logging.Handler]) -> None:
    """Remove and close the handlers :func:`configure_logging` added for a log file."""
    log = logging.getLogger("accelwrap")
    for handler in handlers:
        log.removeHandler(handler)
        handler.close()


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


def banner(runner: Any, saved: Mapping[str, Any]) -> str:
    """The start banner: versions, processes, device, precision, files, resume point, seed."""
    acc = runner.accelerator
    if runner.resume_from is None:
        resume = "from scratch"
    else:
        resume = (f"{runner.resume_from} (epoch {saved.get('epoch', '?')}, "
                  f"iter {saved.get('iter', '?')})")
    lines = [
        f"accelwrap {_version('accelwrap')}, torch {torch.__version__}, "
        f"accelerate {_version('accelerate')}, Python {platform.python_version()}",
        f"world size: {acc.num_processes}, device: {acc.device}, "
        f"mixed precision: {acc.mixed_precision}",
        f"config: {getattr(runner, 'config_file', None) or 'none (built in Python)'}",
        f"work dir: {runner.work_dir}", f"run dir: {runner.run_dir}",
        f"resume: {resume}", f"seed: {runner.seed}",
    ]
    return "run started\n" + "\n".join(f"    {line}" for line in lines)


# ------------------------------------------------------------------ timing
def memory_mb(device: Any = None) -> int:
    """Peak memory in MB: CUDA max allocated on a GPU device, else the process's RSS.

    Example:
        >>> memory_mb('cpu') > 0
        True
    """
    if device is not None and torch.device(device).type == "cuda":
        return int(torch.cuda.max_memory_allocated(device) // 2**20)
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux, bytes on macOS
    return int(peak // (2**20 if sys.platform == "darwin" else 1024))


class IterTimer:
    """Iteration and data-loading times (``time.perf_counter``), and the ETA.

    Call :meth:`mark` where waiting for a batch starts, :meth:`data_ready` when it
    arrives and :meth:`iter_done` after the update; :meth:`report` on a log iteration.

    Example:
        >>> timer = IterTimer(start_iter=0, max_iters=10)
        >>> timer.mark(); timer.data_ready(); timer.iter_done()
        >>> sorted(timer.report(1))
        ['data_time', 'eta', 'time']
    """

    def __init__(self, start_iter: int, max_iters: int) -> None:
        self.start_iter, self.max_iters = start_iter, max_iters
        self._mark = time.perf_counter()
        self._total = self._window_time = self._window_data = 0.0
        self._count = self._window = 0

    def mark(self) -> None:
        """Start waiting for the next batch (after anything that is not training)."""
        self._mark = time.perf_counter()

    def data_ready(self) -> None:
        """The batch arrived."""
        now = time.perf_counter()
        self._window_data += now - self._mark

    def iter_done(self) -> None:
        """The iteration's update is done."""
        now = time.perf_counter()
        elapsed = now - self._mark
        self._mark = now
        self._total += elapsed
        self._window_time += elapsed
        self._count += 1
        self._window += 1

    def report(self, iteration: int) -> dict[str, float]:
        """Means over the iterations since the last report, and the ETA; starts a new window."""
        n = max(self._window, 1)
        out = {"eta": self._total / max(self._count, 1) * (self.max_iters - iteration),
               "time": self._window_time / n, "data_time": self._window_data / n}
        self._window_time = self._window_data = 0.0
        self._window = 0
        return out


# ------------------------------------------------------------------ lines
def _value(key: str, value: float) -> str:
    return f"{key}: {value:.4e}" if key.endswith("lr") else f"{key}: {value:.4f}"


def _position(mode: str, epoch: int, done: int, length: int, by_epoch: bool) -> str:
    if by_epoch:
        return f"Epoch({mode}) [{epoch}][{done:>{len(str(length))}}/{length}]"
    return f"Iter({mode}) [{done:>{len(str(length))}}/{length}]"


def train_line(scalars: Mapping[str, float], epoch: int, iteration: int, epoch_length: int,
               max_iters: int, by_epoch: bool, timing: Mapping[str, float],
               in_epoch: int) -> str:
    """One MMEngine-style training line (``epoch``: epochs completed, shown 1-based;
    ``in_epoch``: this epoch's iterations done, the loop's ``batch_in_epoch``: after a
    resume on another layout, the position in the new layout's epoch)."""
    if by_epoch:
        head = _position("train", epoch + 1, in_epoch, epoch_length, True)
    else:
        head = _position("train", epoch, iteration, max_iters, False)
    items = [_value(k, v) for k, v in scalars.items() if k.endswith("lr")]
    if "eta" in timing:
        items.append(f"eta: {datetime.timedelta(seconds=int(timing['eta']))}")
    items += [f"{k}: {timing[k]:.4f}" for k in ("time", "data_time") if k in timing]
    if "memory" in timing:
        items.append(f"memory: {int(timing['memory'])}")
    items += [_value(k, v) for k, v in scalars.items() if not k.endswith("lr")]
    return "  ".join([head, *items])


def val_line(metrics: Mapping[str, float], epoch: int, batches: int, by_epoch: bool) -> str:
    """One MMEngine-style validation line (``epoch``: epochs completed).

    Example:
        >>> val_line({'accuracy': 0.96}, epoch=3, batches=12, by_epoch=True)
        'Epoch(val) [3][12/12]  accuracy: 0.9600'
    """
    head = _position("val", epoch, batches, batches, by_epoch)
    return "  ".join([head, *(_value(k, v) for k, v in metrics.items())])


def test_line(metrics: Mapping[str, float], batches: int) -> str:
    """One MMEngine-style test line.

    Example:
        >>> test_line({'accuracy': 0.96}, batches=12)
        'Epoch(test) [12/12]  accuracy: 0.9600'
    """
    head = f"Epoch(test) [{batches}/{batches}]"
    return "  ".join([head, *(_value(k, v) for k, v in metrics.items())])
