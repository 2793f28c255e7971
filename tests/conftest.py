"""Shared pytest set-up: keep every test single-threaded and free of Accelerate singletons.

Under ``PYTHONDONTWRITEBYTECODE`` every Python the tests start (train.py, each rank of a
launch) would compile accelwrap, the tests and any uncompiled dependency again (0.5-1 s of CPU
a start); their bytecode is cached outside the checkout instead (``PYTHONPYCACHEPREFIX``),
so the source tree still gets no ``__pycache__``.
"""

import os
import tempfile

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
if os.environ.pop("PYTHONDONTWRITEBYTECODE", None):
    os.environ.setdefault("PYTHONPYCACHEPREFIX", os.path.join(
        tempfile.gettempdir(), f"accelwrap-tests-pycache-{getattr(os, 'getuid', str)()}"))


@pytest.fixture(autouse=True)
def _reset_accelerate_state():
    """Forget Accelerate's process-wide singletons after each test, so mixed precision can
    differ."""
    yield
    try:
        from accelerate.state import AcceleratorState, GradientState, PartialState
    except ImportError:  # pragma: no cover - accelerate is a hard dependency
        return
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    PartialState._reset_state()
