"""The set-up that decides a checkpoint's file names, and the file-name patterns of its parts.

:class:`Layout` is a run's set-up as far as file names go: how many models, optimizers and
schedulers were prepared, a loss scaler, the process count, the engine. :class:`Files` is
one file-name pattern of a checkpoint part, in Accelerate's names (``optimizer{_i}.bin``,
``random_states_{rank}.pkl``, ...), and expands to the names a :class:`Layout` gives. The
parts themselves are declared once, in :mod:`accelwrap.runner.checkpoint_parts`.

Example:
    >>> Files('random_states_{rank}.pkl', lambda layout: 1).names(Layout(world_size=2))
    ['random_states_0.pkl', 'random_states_1.pkl']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["ENGINES", "STATE_FILE", "Files", "Layout"]

#: The runner's own JSON file in a checkpoint folder (written last: it marks a complete one).
STATE_FILE = "runner_state.json"

ENGINES = ("plain", "fsdp_sharded", "fsdp_full", "other")
_ENGINE_NOTE = {"plain": "", "fsdp_sharded": " (FSDP sharded)", "fsdp_full": " (FSDP full)"}


@dataclass(frozen=True)
class Layout:
    """The set-up of a run, as far as it decides a checkpoint's file names.

    Attributes:
        models: Models prepared with the accelerator (a ``train_step`` model: each
            direct sub-module with parameters).
        optimizers: Optimizers prepared (one per ``OptimWrapperDict`` member).
        schedulers: ``LRScheduler`` objects prepared.
        scaler: Whether the accelerator holds a ``GradScaler`` (fp16).
        world_size: Processes that save (each writes its own RNG file).
        engine: ``'plain'`` (one process, DDP), ``'fsdp_sharded'`` (FSDP
            ``SHARDED_STATE_DICT`` through DCP), ``'fsdp_full'`` (FSDP
            ``FULL_STATE_DICT``) or ``'other'`` (DeepSpeed, Megatron, per-rank FSDP
            files: the engine's own model and optimizer files, not declared here).
    """

    models: int = 1
    optimizers: int = 1
    schedulers: int = 0
    scaler: bool = False
    world_size: int = 1
    engine: str = "plain"
    ema: bool = False

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"Layout.engine: expected one of {list(ENGINES)}, got {self.engine!r}")

    @classmethod
    def of(cls, accelerator: Any, models: int, optimizers: int, schedulers: int,
           ema: bool = False) -> Layout:
        """The layout of a run on ``accelerator`` with the given numbers of prepared objects.

        Example:
            >>> from types import SimpleNamespace
            >>> acc = SimpleNamespace(scaler=None, num_processes=2, distributed_type='MULTI_CPU')
            >>> Layout.of(acc, models=1, optimizers=1, schedulers=0).world_size
            2
        """
        return cls(models=models, optimizers=optimizers, schedulers=schedulers,
                   scaler=getattr(accelerator, "scaler", None) is not None,
                   world_size=accelerator.num_processes, engine=_engine(accelerator), ema=ema)


def _engine(accelerator: Any) -> str:
    kind = getattr(accelerator.distributed_type, "value", accelerator.distributed_type)
    if kind in ("DEEPSPEED", "MEGATRON_LM"):
        return "other"
    if kind != "FSDP":
        return "plain"
    plugin = accelerator.state.fsdp_plugin
    state_dict_type = getattr(plugin.state_dict_type, "name", str(plugin.state_dict_type))
    if state_dict_type.endswith("FULL_STATE_DICT"):
        return "fsdp_full"
    if state_dict_type.endswith("SHARDED_STATE_DICT") and getattr(plugin, "use_dcp", True):
        return "fsdp_sharded"
    return "other"


@dataclass(frozen=True)
class Files:
    """One file-name pattern of a part, and how many files it names for a :class:`Layout`.

    In ``pattern``, ``{_i}`` is Accelerate's suffix for the i-th object (nothing for the
    first, ``_1``, ``_2``, ... after it), ``{i}`` the index itself and ``{rank}`` the
    process index; a trailing ``/`` names a folder.

    Example:
        >>> Files('optimizer{_i}.bin', lambda layout: layout.optimizers).names(Layout(optimizers=2))
        ['optimizer.bin', 'optimizer_1.bin']
    """

    pattern: str
    count: Callable[[Layout], int]
    engines: tuple[str, ...] = ENGINES

    def names(self, layout: Layout) -> list[str]:
        """The file and folder names (folders without their ``/``) for ``layout``."""
        if layout.engine not in self.engines:
            return []
        ranks = range(layout.world_size) if "{rank}" in self.pattern else [0]
        return [self.pattern.format(_i=f"_{i}" if i else "", i=i, rank=rank).rstrip("/")
                for i in range(self.count(layout)) for rank in ranks]

    def shown(self) -> str:
        """The pattern as the README shows it, e.g. ``optimizer.bin``, ``optimizer_<i>.bin``."""
        note = _ENGINE_NOTE.get(self.engines[0], "") if len(self.engines) == 1 else ""
        if "{_i}" in self.pattern:
            first, rest = self.pattern.format(_i="", i=0), self.pattern.format(_i="_<i>", i="<i>")
            return f"`{first}`, `{rest}`{note}"
        return f"`{self.pattern.format(i='<i>', rank='<rank>')}`{note}"
