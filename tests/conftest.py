"""Shared pytest set-up: keep every test single-threaded and free of Accelerate singletons."""

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


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
