"""Fault-injection points for the kill-and-resume tests (real SIGKILLs, no mocks).

Example:
    >>> kill_point('iter', 3)  # $ACCELWRAP_TEST_KILL unset: nothing happens
"""

from __future__ import annotations

import os
import signal

__all__ = ["KILL_ENV", "kill_point"]

KILL_ENV = "ACCELWRAP_TEST_KILL"


def kill_point(stage: str, iteration: int) -> None:
    """Test hook: SIGKILL this process when ``$ACCELWRAP_TEST_KILL`` is ``stage:iteration``.

    Stages are ``iter`` (after an iteration's bookkeeping) and ``save`` (inside a
    checkpoint write, after the weights are on disk but before the rename).

    Args:
        stage: ``'iter'`` or ``'save'``.
        iteration: The current global iteration.
    """
    if os.environ.get(KILL_ENV) == f"{stage}:{iteration}":
        os.kill(os.getpid(), signal.SIGKILL)
