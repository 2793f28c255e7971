"""Refuse Accelerate's per-process scheduler stepping, from inside the scheduler.

``accelerator.prepare(scheduler)`` wraps a scheduler in ``AcceleratedScheduler``, which by
default (``step_scheduler_with_optimizer=True``, ``split_batches=False``) calls the inner
``step()`` once per process on every call: with 2 processes every schedule would run at
twice the speed. :func:`accelwrap.optim.prepare` refuses that set-up up front; this guard
catches the same set-up when a user calls ``accelerator.prepare`` directly, at the first
step, before any value has changed.

Example:
    >>> check_not_multistepped()  # called from a scheduler's step(); a no-op elsewhere
"""

from __future__ import annotations

import sys

FIX = ("create the Accelerator with step_scheduler_with_optimizer=False (or use "
       "accelwrap.optim.make_accelerator) and prepare with accelwrap.optim.prepare")


def check_not_multistepped() -> None:
    """Raise if the scheduler's ``step()`` was called by a multi-stepping ``AcceleratedScheduler``.

    Must be called directly from a scheduler's ``step`` method (it inspects that
    method's caller). Costs a dictionary lookup when Accelerate's scheduler module was
    never imported.

    Raises:
        RuntimeError: The caller is ``AcceleratedScheduler.step`` stepping once per
            process (more than one process, ``step_scheduler_with_optimizer=True``,
            ``split_batches=False``).
    """
    module = sys.modules.get("accelerate.scheduler")
    if module is None:
        return
    caller = sys._getframe(2)
    if caller.f_code is not module.AcceleratedScheduler.step.__code__:
        return
    wrapper = caller.f_locals.get("self")
    if not getattr(wrapper, "step_with_optimizer", False) or getattr(wrapper, "split_batches", True):
        return
    from accelerate.state import AcceleratorState

    processes = AcceleratorState().num_processes
    if processes > 1:
        raise RuntimeError(
            f"{type(wrapper.scheduler).__name__} is wrapped in Accelerate's AcceleratedScheduler, "
            f"which would step it {processes} times per call (once per process), so the "
            f"schedule would depend on the number of processes; {FIX}")
