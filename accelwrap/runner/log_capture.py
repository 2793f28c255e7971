"""What the run's text log gets from outside the run: records logged before it opens,
and the error that stops the run.

The run's text log exists only once the run starts; :class:`EarlyRecords` keeps what the
runner logged before (the ``--resume auto`` fallback to an older checkpoint, notes of
the config, a stale lock taken over) for it, and :func:`log_fatal` writes the error that
stops a run into it before it closes (the command prints that error on the console).

Example:
    >>> log_fatal([], ValueError('x'))  # a process without a text log: nothing
"""

from __future__ import annotations

import functools
import logging
import logging.handlers
from collections.abc import Callable
from typing import Any

from accelwrap.errors import CheckpointError, ConfigError, LaunchError, RegistryError

__all__ = ["EarlyRecords", "keeps_early_records", "log_fatal"]

logger = logging.getLogger("accelwrap")


class EarlyRecords(logging.Handler):
    """Keeps the ``accelwrap`` logger's records while it is entered, for the text log.

    Each ``with`` block adds the handler to the logger and removes it again; the records
    stay until :meth:`replay` hands them to the handlers of the run's text log (those of
    ``run_log.configure_logging``, which write them once the file opens). Only records that
    reach the logger's handlers are kept (the logger's level decides, as for the console).

    Example:
        >>> early = EarlyRecords()
        >>> with early:
        ...     logger.warning('resume auto: skipped %s', 'iter_50')
        >>> target = logging.handlers.MemoryHandler(10)
        >>> early.replay([target])
        >>> [r.getMessage() for r in target.buffer], early.records
        (['resume auto: skipped iter_50'], [])
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> EarlyRecords:
        logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logger.removeHandler(self)

    def replay(self, handlers: list[logging.Handler]) -> None:
        """Hand the kept records to ``handlers`` (each as its level allows); forget them."""
        for handler in handlers:
            for record in self.records:
                if record.levelno >= handler.level:
                    handler.handle(record)
        self.records.clear()


def keeps_early_records(init: Callable[..., None]) -> Callable[..., None]:
    """Decorate ``Runner.__init__``: what it logs is kept in ``self.early_log``
    (:class:`EarlyRecords`), for the run's text log."""

    @functools.wraps(init)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
        self.early_log = EarlyRecords()
        with self.early_log:
            init(self, *args, **kwargs)

    return wrapper


# What `accelwrap train` prints as one "error:" line (accelwrap.tools.train.run_train);
# any other error also gets its traceback in the text log.
_ONE_LINE_ERRORS = (ConfigError, RegistryError, CheckpointError, LaunchError,
                    FileNotFoundError, ValueError, TypeError)


def log_fatal(handlers: list[logging.Handler], err: BaseException) -> None:
    """Write the error that stops a run into the run's text log (not the console).

    Args:
        handlers: The text log's handlers (``run_log.open_log_file``'s); a file that is
            not open yet (the run never started) gets nothing.
        err: The error, which the command prints on the console itself.

    Example:
        >>> log_fatal([], ValueError('x'))  # a process without a text log: nothing
    """
    files = [h for h in handlers if isinstance(h, logging.FileHandler)]
    if not files:
        return
    text = str(err) or type(err).__name__
    if isinstance(err, _ONE_LINE_ERRORS):
        record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0, "%s", (text,), None)
    else:
        record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0,
                                   "the run stopped: %s: %s", (type(err).__name__, text),
                                   (type(err), err, err.__traceback__))
    for handler in files:
        handler.handle(record)
        handler.flush()
