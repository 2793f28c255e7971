"""The global random states of a process: snapshot and restore.

A resumed run puts back the states its checkpoint saved once the epoch's iterator has
drawn from them; the pre-flight puts back what its forward pass drew.

Example:
    >>> import torch
    >>> snap = rng_snapshot()
    >>> first = torch.rand(1)
    >>> restore_rng(snap)
    >>> torch.equal(torch.rand(1), first)
    True
"""

from __future__ import annotations

from typing import Any

__all__ = ["restore_rng", "rng_snapshot"]


def rng_snapshot() -> dict[str, Any]:
    """The global RNG states (Python, NumPy, torch CPU and CUDA) of this process."""
    import random

    import numpy as np
    import torch

    snap = {"python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        snap["cuda"] = torch.cuda.get_rng_state_all()
    return snap


def restore_rng(snapshot: dict[str, Any] | None) -> None:
    """Set the global RNG states from :func:`rng_snapshot` (no-op for None)."""
    if snapshot is None:
        return
    import random

    import numpy as np
    import torch

    random.setstate(snapshot["python"])
    np.random.set_state(snapshot["numpy"])
    torch.set_rng_state(snapshot["torch"])
    if "cuda" in snapshot:
        torch.cuda.set_rng_state_all(snapshot["cuda"])
