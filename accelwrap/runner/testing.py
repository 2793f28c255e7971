"""The test loop (MMEngine's ``TestLoop``): one pass over ``test_dataloader``.

Metrics come from the model's ``val_step`` (else the mean loss), as in validation;
``test_evaluator`` is accepted and not used. With a ``custom_hooks`` ``EMAHook`` and a
checkpoint folder holding ``ema.safetensors``, the averaged weights are tested, as
MMEngine's hook swaps them in for testing. The metrics are logged as one
``Epoch(test) [n/n]  name: value`` line and returned.

Example:
    >>> parse_test_cfg({'type': 'TestLoop'})
    >>> parse_test_cfg({'type': 'ValLoop'})
    Traceback (most recent call last):
    ...
    ValueError: test_cfg.type: only 'TestLoop' is supported, got 'ValLoop'
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from accelwrap.registry import to_plain
from accelwrap.runner.ema import EMA_FILE
from accelwrap.runner.loops import validate
from accelwrap.runner.run_log import test_line

__all__ = ["parse_test_cfg", "run_test"]

logger = logging.getLogger("accelwrap")


def parse_test_cfg(cfg: Mapping | None) -> None:
    """Check ``test_cfg`` (``{}`` or ``dict(type='TestLoop', fp16=False)``).

    Raises:
        ValueError: Another loop type, ``fp16: true`` or an unknown key.
    """
    args = dict(to_plain(cfg) or {})
    if args.get("type", "TestLoop") != "TestLoop":
        raise ValueError(f"test_cfg.type: only 'TestLoop' is supported, got {args['type']!r}")
    if args.get("fp16", False) is not False:
        raise ValueError(f"test_cfg.fp16: expected false (mixed precision is the accelerator's "
                         f"mixed_precision), got {args['fp16']!r}")
    unknown = sorted(set(args) - {"type", "fp16"})
    if unknown:
        raise ValueError(f"test_cfg: unknown keys {unknown}; expected 'type' and 'fp16'")


def run_test(runner: Any, loader: Any, checkpoint: str | Path | None = None) -> dict[str, float]:
    """Run ``loader`` once with the runner's model (already loaded); log and return metrics.

    Args:
        runner: A built :class:`~accelwrap.runner.Runner`.
        loader: The prepared test ``DataLoader``.
        checkpoint: The checkpoint the weights came from (its ``ema.safetensors`` is used
            when the run has an ``EMAHook``).
    """
    ema = getattr(runner, "ema", None)
    swap = ema is not None and checkpoint is not None and (Path(checkpoint) / EMA_FILE).is_file()
    if swap:
        ema.load(Path(checkpoint))
        ema.swap()
    try:
        metrics = validate(runner, loader)
    finally:
        if swap:
            ema.swap()
    if runner.accelerator.is_main_process:
        logger.info(test_line(metrics, len(loader)))
    return metrics
