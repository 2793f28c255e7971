"""Model weights outside resume: ``load_from``, the model fingerprint, merging FSDP shards.

Example:
    >>> import torch
    >>> from accelwrap.runner.weights import fingerprint_problems, shape_map
    >>> fingerprint_problems(shape_map(torch.nn.Linear(3, 2).state_dict()), {'weight': [2, 3]})
    ['not in the model: bias']
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from accelwrap.runner.checkpoint_find import verify_before_reading

logger = logging.getLogger("accelwrap")

# Where Accelerate's save_state puts a DeepSpeed engine's module weights (ZeRO 0-2: full).
DEEPSPEED_MODEL = "pytorch_model/mp_rank_00_model_states.pt"

__all__ = ["fingerprint_problems", "load_weights", "merge_sharded", "shape_map"]


def load_weights(model: Any, source: str | os.PathLike) -> None:
    """Load model weights (strictly) from a checkpoint folder or a weights file.

    Args:
        model: The (unprepared) model.
        source: A checkpoint folder holding ``model.safetensors`` (or
            ``pytorch_model.bin``, or a DeepSpeed ZeRO 0-2 engine's
            ``pytorch_model/mp_rank_00_model_states.pt``), a ``.safetensors`` file, or a
            torch file (loaded with ``weights_only=True``; a ``state_dict`` key is looked
            into).

    Raises:
        FileNotFoundError: Nothing loadable at ``source``.
        DamagedCheckpointError: The weights file is in an accelwrap checkpoint and does
            not match its manifest (named with the newest intact checkpoint beside it).
        ValueError: The weights belong to a different model.

    Example:
        >>> import tempfile, torch
        >>> path = tempfile.mkdtemp() + '/w.pt'
        >>> torch.save(torch.nn.Linear(2, 1).state_dict(), path)
        >>> load_weights(torch.nn.Linear(2, 1), path)
        >>> load_weights(torch.nn.Linear(3, 1), path)
        Traceback (most recent call last):
        ...
        ValueError: load_from=...: shape mismatch: weight: checkpoint [1, 2] vs model [1, 3]
    """
    note = verify_before_reading(source)  # a checkpoint folder, or its manifest entry
    if note:
        logger.warning("%s", note)
    current = model.state_dict()
    path = Path(source)
    if path.is_dir() and (path / DEEPSPEED_MODEL).is_file():
        weights = _deepspeed_weights(source, path / DEEPSPEED_MODEL, current)
    else:
        weights = _read_weights(source, path)
    problems = fingerprint_problems(shape_map(weights), shape_map(current))
    if problems:
        raise ValueError(f"load_from={str(source)!r} holds weights of a different model: "
                         + "; ".join(problems))
    model.load_state_dict(weights)


def _read_weights(source: str | os.PathLike, path: Path) -> Mapping[str, Any]:
    """The state dict in a weights file, or in a checkpoint folder's weights file."""
    import torch

    if path.is_dir():
        candidates = [path / "model.safetensors", path / "pytorch_model.bin"]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            raise FileNotFoundError(f"load_from={str(source)!r}: the folder holds neither "
                                    f"model.safetensors, pytorch_model.bin nor {DEEPSPEED_MODEL}")
    if not path.is_file():
        raise FileNotFoundError(f"load_from={str(source)!r}: no such file or folder")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    weights = torch.load(path, map_location="cpu", weights_only=True)
    return weights.get("state_dict", weights) if isinstance(weights, dict) else weights


def _deepspeed_weights(source: str | os.PathLike, file: Path,
                       current: Mapping[str, Any]) -> Mapping[str, Any]:
    """The engine's module weights in a DeepSpeed checkpoint folder (Accelerate's layout),
    read with ``weights_only=True``: complete for ZeRO stages 0-2, whatever the world size
    that saved them. ZeRO-3 keeps only partitions there: refused with the way out."""
    import torch

    weights = torch.load(file, map_location="cpu", weights_only=True)["module"]
    if any(v.numel() == 0 and k in current and current[k].numel() > 0
           for k, v in weights.items()):
        raise ValueError(f"load_from={str(source)!r}: a DeepSpeed ZeRO-3 checkpoint keeps only "
                         "partitions of the weights; consolidate them first with the "
                         "checkpoint's zero_to_fp32.py and pass the file it writes")
    cast = sorted({str(v.dtype) for k, v in weights.items()
                   if k in current and v.is_floating_point() and v.dtype != current[k].dtype})
    if cast:
        logger.warning("load_from=%s: DeepSpeed's module weights are %s (its fp32 master "
                       "weights sit in the partitioned optimizer state; the checkpoint's "
                       "zero_to_fp32.py writes them)", source, ", ".join(cast))
    return weights


def shape_map(state_dict: Mapping[str, Any]) -> dict[str, list[int]]:
    """``{name: shape}`` of a state dict: the fingerprint :func:`fingerprint_problems` compares.

    Example:
        >>> import torch
        >>> shape_map(torch.nn.Linear(3, 2).state_dict())
        {'weight': [2, 3], 'bias': [2]}
    """
    return {name: list(value.shape) for name, value in state_dict.items()}


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


def merge_sharded(checkpoint: str | os.PathLike, output_dir: str | os.PathLike) -> Path:
    """Merge an FSDP ``SHARDED_STATE_DICT`` checkpoint's model shards into one file.

    Args:
        checkpoint: A checkpoint folder holding ``pytorch_model_fsdp_0/``.
        output_dir: Where ``model.safetensors`` is written.

    Returns:
        The merged weights file.

    Raises:
        FileNotFoundError: The checkpoint has no sharded model folder.

    Example:
        >>> # merge_sharded('work_dirs/fsdp/checkpoints/iter_40', 'merged')
    """
    from accelerate.utils import merge_fsdp_weights

    shards = Path(checkpoint) / "pytorch_model_fsdp_0"
    if not shards.is_dir():
        raise FileNotFoundError(f"{str(checkpoint)!r} has no 'pytorch_model_fsdp_0' folder; "
                                "only FSDP SHARDED_STATE_DICT checkpoints need merging")
    merge_fsdp_weights(str(shards), str(output_dir), safe_serialization=True)
    return Path(output_dir) / "model.safetensors"
