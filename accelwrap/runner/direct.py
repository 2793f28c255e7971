"""The direct checkpoint layout: single-process and DDP runs, without ``save_state``.

Accelerate's ``save_state`` writes one torch file per model, optimizer, scheduler and
rank's RNG state; a small model's checkpoint then costs mostly the fixed price of
creating, syncing and reopening those containers. Where Accelerate adds nothing (one
process, or DDP, whose ranks hold identical replicas) the runner writes the same state
itself, in as few files as possible:

    state.pt       rank 0: every prepared model (unwrapped ``state_dict``), optimizer,
                   scheduler, the GradScaler, Accelerate's step counter and rank 0's RNG
    rng_<r>.pt     rank r > 0: that rank's RNG states (each rank writes its own)

Both load with ``torch.load(weights_only=True)``: RNG states are stored as bytes and
plain numbers (Python's and NumPy's Mersenne-Twister words as little-endian uint32),
so no pickled object is needed and the slow ``weights_only`` unpickler has little to
read (no 625-element tuple, no extra tensors to rebuild). FSDP,
DeepSpeed, Megatron-LM and XLA runs, and runs with objects registered for
checkpointing, keep Accelerate's layout (:func:`uses_direct_layout`).

Example:
    >>> from accelwrap.runner.direct import is_direct_checkpoint
    >>> is_direct_checkpoint('/nonexistent')
    False
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

STATE_PT = "state.pt"
RNG_PT = "rng_{rank}.pt"
FORMAT = 1
WORD = "<u4"  # Mersenne-Twister state words: little-endian uint32
# Distributed types whose state is sharded or owned by another engine.
ACCELERATE_ONLY = ("FSDP", "DEEPSPEED", "MEGATRON_LM", "XLA")

__all__ = ["RNG_PT", "STATE_PT", "DirectLayout", "is_direct_checkpoint", "read_model_weights",
           "uses_direct_layout"]


def uses_direct_layout(accelerator: Any) -> bool:
    """Whether ``accelerator``'s checkpoints can be written directly (see the module doc).

    True for one process and DDP-style data parallelism, unless something only
    ``save_state`` knows how to store is registered: custom checkpoint objects, model
    state hooks, or dataloaders whose sampler or iteration state Accelerate saves.
    """
    if str(getattr(accelerator.distributed_type, "value", accelerator.distributed_type)) in ACCELERATE_ONLY:
        return False
    if accelerator._custom_objects or accelerator._save_model_state_pre_hook \
            or accelerator._load_model_state_pre_hook:
        return False
    return not any(_loader_has_state(loader) for loader in accelerator._dataloaders)


def _loader_has_state(loader: Any) -> bool:
    from accelerate.data_loader import IterableDatasetShard, SeedableRandomSampler

    if getattr(loader, "use_stateful_dataloader", False):
        return True
    return (isinstance(getattr(loader, "dataset", None), IterableDatasetShard)
            and isinstance(loader.get_sampler(), SeedableRandomSampler))


def is_direct_checkpoint(path: str | os.PathLike) -> bool:
    """Whether checkpoint folder ``path`` was written in the direct layout."""
    return (Path(path) / STATE_PT).is_file()


class DirectLayout:
    """Writes and reads direct checkpoints of one accelerator's prepared objects.

    Call :meth:`save` and :meth:`load` on every rank. The unwrapped models are looked
    up once (Accelerate's ``unwrap_model`` probes installed packages on every call).

    Args:
        accelerator: The run's ``Accelerator``, everything already prepared.

    Example:
        >>> # layout = DirectLayout(accelerator)   # once uses_direct_layout(accelerator)
        >>> # layout.save(Path('ckpt')); layout.load(Path('ckpt'))
    """

    def __init__(self, accelerator: Any) -> None:
        self.accelerator = accelerator
        self._models: list[Any] = []

    def models(self) -> list[Any]:
        """The prepared models, unwrapped (refreshed if more were prepared since)."""
        prepared = self.accelerator._models
        if len(self._models) != len(prepared):
            self._models = [self.accelerator.unwrap_model(model) for model in prepared]
        return self._models

    def save(self, folder: Path) -> None:
        """Write this rank's part of a direct checkpoint into ``folder``."""
        import torch

        acc = self.accelerator
        rank = acc.process_index
        # On every rank: a sharded optimizer's state_dict (ZeroRedundancyOptimizer) gathers.
        optimizers = [optimizer.state_dict() for optimizer in acc._optimizers]
        if rank != 0:
            torch.save(_rng_state(), folder / RNG_PT.format(rank=rank))
            return
        torch.save({"format": FORMAT, "models": [model.state_dict() for model in self.models()],
                    "optimizers": optimizers,
                    "schedulers": [s.state_dict() for s in acc._schedulers],
                    "scaler": None if acc.scaler is None else acc.scaler.state_dict(),
                    "step": acc.step, "rng": _rng_state()}, folder / STATE_PT)

    def load(self, folder: Path) -> None:
        """Load a direct checkpoint into the prepared objects and this rank's RNG.

        Raises:
            ValueError: The checkpoint holds a different number of models, optimizers
                or schedulers than were prepared, or a GradScaler state where none is
                used (or the reverse).
            FileNotFoundError: This rank's RNG file is missing (saved by fewer ranks).
        """
        import torch

        acc = self.accelerator
        state = torch.load(folder / STATE_PT, map_location="cpu", weights_only=True)
        rng = state["rng"] if acc.process_index == 0 else _read_rng(folder, acc.process_index)
        _check_counts(state, self.models(), acc)
        for model, weights in zip(self.models(), state["models"]):
            model.load_state_dict(weights)
        for optimizer, saved in zip(acc._optimizers, state["optimizers"]):
            optimizer.load_state_dict(saved)
        for scheduler, saved in zip(acc._schedulers, state["schedulers"]):
            scheduler.load_state_dict(saved)
        if acc.scaler is not None:
            acc.scaler.load_state_dict(state["scaler"])
        acc.step = int(state["step"])
        _set_rng(rng)


def _check_counts(state: dict[str, Any], models: list[Any], acc: Any) -> None:
    for key, prepared in (("models", models), ("optimizers", acc._optimizers),
                          ("schedulers", acc._schedulers)):
        if len(state[key]) != len(prepared):
            raise ValueError(f"{STATE_PT} holds {len(state[key])} {key}, this run prepared "
                             f"{len(prepared)}: it was saved by a different setup")
    if (state["scaler"] is None) != (acc.scaler is None):
        saved, used = ("lacks", "uses one") if state["scaler"] is None else ("holds", "has none")
        raise ValueError(f"{STATE_PT} {saved} a GradScaler state and this run {used}: "
                         "mixed precision differs from the saving run")


def read_model_weights(folder: str | os.PathLike) -> dict[str, Any]:
    """The first model's state dict in a direct checkpoint (``weights_only=True``)."""
    import torch

    state = torch.load(Path(folder) / STATE_PT, map_location="cpu", weights_only=True)
    return state["models"][0]


def _read_rng(folder: Path, rank: int) -> dict[str, Any]:
    import torch

    path = folder / RNG_PT.format(rank=rank)
    if not path.is_file():
        raise FileNotFoundError(f"{str(folder)!r} has no {path.name}: it was saved by fewer "
                                f"processes than this run's rank {rank} needs")
    return torch.load(path, weights_only=True)


def _rng_state() -> dict[str, Any]:
    """This process's Python, NumPy, torch (and CUDA) RNG states as bytes and numbers.

    Bytes, not tensors: ``torch.load(weights_only=True)`` rebuilds each tensor with a
    few dozen microseconds of Python, a bytes object is one pickle opcode.
    """
    import random

    import numpy as np
    import torch

    version, words, gauss = random.getstate()  # 624 Mersenne-Twister words + position
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state = {"python": np.asarray(words, dtype=WORD).tobytes(), "python_extra": [version, gauss],
             "numpy": np.asarray(keys, dtype=WORD).tobytes(),
             "numpy_extra": [str(name), int(pos), int(has_gauss), float(cached)],
             "torch": torch.get_rng_state().numpy().tobytes()}
    if torch.cuda.is_available():
        state["cuda"] = [s.numpy().tobytes() for s in torch.cuda.get_rng_state_all()]
    return state


def _set_rng(state: dict[str, Any]) -> None:
    import random

    import numpy as np
    import torch

    version, gauss = state["python_extra"]
    random.setstate((version, tuple(np.frombuffer(state["python"], dtype=WORD).tolist()), gauss))
    name, pos, has_gauss, cached = state["numpy_extra"]
    np.random.set_state((name, np.frombuffer(state["numpy"], dtype=WORD).copy(), pos, has_gauss, cached))
    torch.set_rng_state(_byte_tensor(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_byte_tensor(s) for s in state["cuda"]])


def _byte_tensor(data: bytes) -> Any:
    import torch

    return torch.frombuffer(bytearray(data), dtype=torch.uint8)
