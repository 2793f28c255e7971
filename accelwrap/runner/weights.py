"""Loading model weights from checkpoints and weights files; comparing model fingerprints.

Example:
    >>> from accelwrap.runner.weights import fingerprint_problems
    >>> fingerprint_problems({'w': [2]}, {'w': [3]})
    ['shape mismatch: w: checkpoint [2] vs model [3]']
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from accelwrap.runner.direct import is_direct_checkpoint, read_model_weights

__all__ = ["fingerprint_problems", "load_weights"]


def load_weights(model: Any, source: str | os.PathLike) -> None:
    """Load model weights (strictly) from a checkpoint folder or a weights file.

    Args:
        model: The (unprepared) model.
        source: A checkpoint folder (direct layout: the first model in ``state.pt``;
            Accelerate's: ``model.safetensors`` or ``pytorch_model.bin``), a
            ``.safetensors`` file, or a torch file
            (loaded with ``weights_only=True``; a ``state_dict`` key is looked into).

    Raises:
        FileNotFoundError: Nothing loadable at ``source``.
        ValueError: The weights belong to a different model.
    """
    import torch

    path = Path(source)
    if path.is_dir() and is_direct_checkpoint(path):
        _load_checked(model, read_model_weights(path), source)
        return
    if path.is_dir():
        candidates = [path / "model.safetensors", path / "pytorch_model.bin"]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            raise FileNotFoundError(f"load_from={str(source)!r}: the folder holds none of "
                                    "state.pt, model.safetensors, pytorch_model.bin")
    if not path.is_file():
        raise FileNotFoundError(f"load_from={str(source)!r}: no such file or folder")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        weights = load_file(str(path))
    else:
        weights = torch.load(path, map_location="cpu", weights_only=True)
        weights = weights.get("state_dict", weights) if isinstance(weights, dict) else weights
    _load_checked(model, weights, source)


def _load_checked(model: Any, weights: dict[str, Any], source: str | os.PathLike) -> None:
    current = {k: list(v.shape) for k, v in model.state_dict().items()}
    problems = fingerprint_problems({k: list(v.shape) for k, v in weights.items()}, current)
    if problems:
        raise ValueError(f"load_from={str(source)!r} holds weights of a different model: "
                         + "; ".join(problems))
    model.load_state_dict(weights)


def fingerprint_problems(saved: dict[str, list[int]], current: dict[str, list[int]],
                         limit: int = 5) -> list[str]:
    """Differences between two ``{parameter name: shape}`` maps, at most ``limit`` of each kind."""
    missing = [k for k in current if k not in saved]
    unexpected = [k for k in saved if k not in current]
    shapes = [f"{k}: checkpoint {saved[k]} vs model {current[k]}"
              for k in current if k in saved and list(saved[k]) != list(current[k])]
    problems = []
    for label, items in (("missing in the checkpoint", missing),
                         ("not in the model", unexpected), ("shape mismatch", shapes)):
        if items:
            more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
            problems.append(f"{label}: {', '.join(items[:limit])}{more}")
    return problems
