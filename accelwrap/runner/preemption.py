"""Preemption: a signal makes every process finish its iteration, save, and exit 75.

SLURM, Kubernetes and spot instances warn a job with SIGTERM (SLURM's ``--signal`` may
send SIGUSR1 ahead of time) and kill it a grace period later. While a run trains, each
signal of ``default_hooks.checkpoint.preempt_signals`` (default ``[SIGTERM]``; ``[]``
turns this off) only sets a flag, on whichever process received it. At the end of every
iteration the flag is combined over all processes (one all-reduce of one number, read
an iteration later so that it never stalls training; none with one process), so all of
them stop at the same iteration: they write a checkpoint
``iter_<N>`` (inside an accumulation window: at the window's end, as every save -- its
partial gradients are not part of a checkpoint), the run ends with a log line naming
it, and the process exits with :data:`PREEMPTED_EXIT_CODE` (75, ``EX_TEMPFAIL``:
"try again later"). ``--resume auto`` continues exactly where it stopped. A second
signal while that happens exits at once (the signal's default action: status
``128 + signal`` in a shell), keeping the previous checkpoint. With
``default_hooks.checkpoint.async: true`` the exit waits for the checkpoint's background
write; when that write failed under ``on_error: warn``, the checkpoint is written again,
synchronously, before the exit (:mod:`accelwrap.runner.async_save`, which reads
:attr:`PreemptionWatch.stopping`), so a preempted run never leaves without it.

``accelerate launch`` (torchrun) passes SIGTERM, SIGINT, SIGHUP and SIGQUIT on to its
workers (more with ``PET_SIGNALS_TO_HANDLE=SIGTERM,SIGUSR1``) and then reports the job
as failed, naming each worker's exit code 75; it kills the workers if they take longer
than ``TORCH_ELASTIC_SHUTDOWN_TIMEOUT`` (30 s) to save. A one-process ``accelerate
launch`` does not pass signals on, and the launcher exits at once (143): on Linux,
:func:`die_with_launcher` (called by ``scripts/train.py`` and ``accelwrap train``) asks
the kernel to send the training process SIGTERM when its launcher is gone, so it saves
and exits 75 instead of training on as an orphan that holds the work dir's lock.

Example:
    >>> parse_preempt_signals(['SIGTERM', 'usr1'])
    ('SIGTERM', 'SIGUSR1')
    >>> parse_preempt_signals('SIGKILL')
    Traceback (most recent call last):
    ...
    ValueError: default_hooks.checkpoint.preempt_signals: 'SIGKILL' cannot be caught; expected a list of signal names such as [SIGTERM, SIGUSR1], or [] for none
"""  # noqa: E501

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any

import torch

from accelwrap.errors import suggest
from accelwrap.runner.run_log import EVERY_RANK

__all__ = ["DEFAULT_PREEMPT_SIGNALS", "LAUNCHER_ENV", "PREEMPTED_EXIT_CODE", "Preempted",
           "PreemptionWatch", "die_with_launcher", "launched_by", "parse_preempt_signals"]

logger = logging.getLogger("accelwrap")

PREEMPTED_EXIT_CODE = 75
DEFAULT_PREEMPT_SIGNALS = ("SIGTERM",)
_KEY = "default_hooks.checkpoint.preempt_signals"
_EXPECTED = "expected a list of signal names such as [SIGTERM, SIGUSR1], or [] for none"
# Set in the training process's environment by the launcher that started it: torchrun's
# agent (also accelerate launch with several processes), accelerate launch's one-process
# launcher (it always sets the dynamo backend, to "no" by default).
LAUNCHER_ENV = {"TORCHELASTIC_RUN_ID": "torchrun", "ACCELERATE_DYNAMO_BACKEND": "accelerate launch"}
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def launched_by(environ: Any = None) -> str | None:
    """The launcher that started this process, judged by its environment (None: none).

    Example:
        >>> launched_by({'ACCELERATE_DYNAMO_BACKEND': 'no'}), launched_by({'RANK': '0'})
        ('accelerate launch', None)
    """
    environ = os.environ if environ is None else environ
    return next((name for key, name in LAUNCHER_ENV.items() if key in environ), None)


def die_with_launcher(parent: int | None = None) -> bool:
    """Linux, under a launcher: get SIGTERM from the kernel when the launcher exits.

    ``prctl(PR_SET_PDEATHSIG, SIGTERM)``: a launcher killed or gone (a one-process
    ``accelerate launch`` exits at once on SIGTERM, forwarding nothing) then stops this
    process as a preemption does (checkpoint, exit 75) instead of leaving it to train on.
    A launcher that is already gone when this runs (``getppid()`` is no longer
    ``parent``) sends the signal at once. Nothing happens on other systems, without a
    launcher (:func:`launched_by`), or where ``prctl`` fails (then False).

    Args:
        parent: The launcher's pid, read as early as possible (default: ``getppid()`` now).

    Returns:
        Whether the kernel will send the signal.
    """
    if not sys.platform.startswith("linux") or launched_by() is None:
        return False
    parent = os.getppid() if parent is None else parent
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        failed = libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0
    except (OSError, AttributeError):
        failed = True
    if failed:
        logger.warning("prctl(PR_SET_PDEATHSIG) failed (%s): if the launcher exits, this "
                       "process trains on", os.strerror(ctypes.get_errno()) or "unavailable",
                       extra=EVERY_RANK)
        return False
    if os.getppid() != parent:  # gone before the kernel was asked: it will not signal
        os.kill(os.getpid(), signal.SIGTERM)
    return True


def parse_preempt_signals(value: Any) -> tuple[str, ...]:
    """Check a ``preempt_signals`` setting; canonical names (``'usr1'`` -> ``'SIGUSR1'``).

    Args:
        value: A signal name, or a list of names (case and the ``SIG`` prefix optional).

    Returns:
        The signal names, without duplicates.

    Raises:
        ValueError: An unknown name, or a signal that cannot be caught (SIGKILL, SIGSTOP).
    """
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ValueError(f"{_KEY}: got {value!r}; {_EXPECTED}")
    names: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"{_KEY}: got {item!r} in {value!r}; {_EXPECTED}")
        name = item.upper() if item.upper().startswith("SIG") else f"SIG{item.upper()}"
        if name in ("SIGKILL", "SIGSTOP"):
            raise ValueError(f"{_KEY}: {item!r} cannot be caught; {_EXPECTED}")
        if not isinstance(getattr(signal, name, None), signal.Signals):
            known = [s.name for s in signal.Signals]
            raise ValueError(f"{_KEY}: unknown signal {item!r} ({suggest(name, known)}); "
                             f"{_EXPECTED}")
        if name not in names:
            names.append(name)
    return tuple(names)


class Preempted(SystemExit):
    """Raised by the training loop once the preemption checkpoint is written.

    A ``SystemExit`` whose ``code`` is :data:`PREEMPTED_EXIT_CODE`: a script that calls
    ``runner.train()`` exits with 75 and no traceback unless it catches this.

    Attributes:
        signal_name: The signal that asked for it (``'SIGTERM'``).
        iteration: The iteration the checkpoint holds.
        checkpoint: The checkpoint folder.
    """

    def __init__(self, signal_name: str, iteration: int, checkpoint: str) -> None:
        super().__init__(PREEMPTED_EXIT_CODE)
        self.signal_name, self.iteration, self.checkpoint = signal_name, iteration, checkpoint

    def __str__(self) -> str:
        return (f"preempted by {self.signal_name}: checkpoint {self.checkpoint} holds iter "
                f"{self.iteration}; continue with --resume auto (exit status "
                f"{PREEMPTED_EXIT_CODE})")


class PreemptionWatch:
    """Signal handlers that set a flag, and the per-iteration check all processes agree on.

    Use as a context manager around the training loop: the handlers are installed on
    entry (main thread only) and the previous ones put back on exit.

    Args:
        accelerator: The run's Accelerator (its process count and device).
        signals: Signal names (see :func:`parse_preempt_signals`).

    Example:
        >>> class OneProcess:
        ...     num_processes, device = 1, 'cpu'
        >>> with PreemptionWatch(OneProcess(), ['SIGUSR1']) as watch:
        ...     before = watch.requested()
        ...     os.kill(os.getpid(), signal.SIGUSR1)
        ...     after = watch.requested()
        >>> before, after, watch.signal_name
        (False, True, 'SIGUSR1')
    """

    def __init__(self, accelerator: Any, signals: Sequence[str]) -> None:
        self.accelerator = accelerator
        self.signals = [getattr(signal, name) for name in parse_preempt_signals(list(signals))]
        self.signal_name: str | None = None  # the first signal received (this process)
        self._received = False
        self._agreed = False
        self._previous: dict[int, Any] = {}
        self._work: Any = None  # the all-reduce in flight
        self._flag: torch.Tensor | None = None

    def __enter__(self) -> PreemptionWatch:
        if threading.current_thread() is not threading.main_thread():
            if self.signals:
                logger.warning("preemption signals are not watched: the run is not in the "
                               "main thread (Python handles signals there only)")
            return self
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        if self._work is not None and exc_type is None:
            self._work.wait()  # every process made the same calls: finish the last sum
        self._work = None
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self._received:
            # Second signal: exit at once, as the signal's default action does.
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self._received, self.signal_name = True, name
        logger.warning("received %s: finishing this iteration, then saving a checkpoint and "
                       "exiting with status %d (a second signal exits at once)", name,
                       PREEMPTED_EXIT_CODE)

    @property
    def stopping(self) -> bool:
        """Whether :meth:`requested` has answered true (no communication): the run
        stops after the current checkpoint."""
        return self._agreed

    def requested(self) -> bool:
        """Whether any process received a signal; collective with several processes.

        Call it at the same point of every iteration on every process. With several
        processes the flags are summed by an all-reduce started here and read at the next
        call (it runs while the next iteration computes, so it does not stall training): the
        answer is the same on every process, one iteration after the signal. Once true it
        stays true (and no longer communicates).
        """
        if self._agreed:
            return True
        if not self.signals:
            return False
        if self.accelerator.num_processes == 1:
            self._agreed = self._received
        else:
            self._agreed = self._combine()
        if self._agreed and self.signal_name is None:
            self.signal_name = "a signal on another process"
        return self._agreed

    def _combine(self) -> bool:
        """Read the sum started by the previous call; start the next one unless it stops."""
        import torch.distributed as dist

        agreed = False
        if self._work is not None:
            self._work.wait()
            agreed = bool(self._flag.item() > 0)
            self._work = None
        if not agreed:
            self._flag = torch.tensor([1.0 if self._received else 0.0],
                                      device=self.accelerator.device)
            self._work = dist.all_reduce(self._flag, op=dist.ReduceOp.SUM, async_op=True)
        return agreed
