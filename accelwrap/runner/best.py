"""The best checkpoint: ``default_hooks.checkpoint.save_best`` and ``rule``, as in MMEngine.

After each validation the chosen metric (``'auto'``: the first one the validation gives)
is compared with the best so far; a better value writes ``best_<metric>_epoch_<n>`` (or
``best_<metric>_iter_<n>`` when checkpoints count iterations: MMEngine's names without
``.pth``), kept besides the last ``max_keep_ckpts`` and replacing the previous best. The
rule (``'greater'``/``'less'``) is MMEngine's inference when not given: a metric name
equal to, then containing, one of :data:`GREATER_KEYS` is ``'greater'``, one of
:data:`LESS_KEYS` ``'less'`` (case-insensitive).

Example:
    >>> infer_rule('accuracy'), infer_rule('val/loss'), infer_rule('mAP', 'less')
    ('greater', 'less', 'less')
"""

from __future__ import annotations

import logging
import math
from typing import Any

from accelwrap.errors import ConfigError

__all__ = ["BEST_PREFIX", "GREATER_KEYS", "LESS_KEYS", "RULES", "BestTracker", "best_name",
           "infer_rule"]

logger = logging.getLogger("accelwrap")

#: MMEngine's ``CheckpointHook._default_greater_keys`` / ``_default_less_keys``.
GREATER_KEYS = ("acc", "top", "AR@", "auc", "precision", "mAP", "mDice", "mIoU", "mAcc", "aAcc")
LESS_KEYS = ("loss",)
RULES = ("greater", "less")
BEST_PREFIX = "best_"


def infer_rule(metric: str, rule: str | None = None) -> str:
    """``rule`` if given, else MMEngine's inference from the metric's name.

    Raises:
        ValueError: ``rule`` is not ``'greater'``/``'less'``, or no rule can be inferred.
    """
    if rule is not None:
        if rule not in RULES:
            raise ValueError(f"default_hooks.checkpoint.rule: expected one of {list(RULES)}, "
                             f"got {rule!r}")
        return rule
    name = metric.lower()
    greater, less = {k.lower() for k in GREATER_KEYS}, {k.lower() for k in LESS_KEYS}
    if name in greater:
        return "greater"
    if name in less:
        return "less"
    if any(key in name for key in greater):
        return "greater"
    if any(key in name for key in less):
        return "less"
    raise ValueError(f"default_hooks.checkpoint.rule: cannot infer 'greater' or 'less' for "
                     f"save_best={metric!r}; set rule: greater or rule: less")


def best_name(metric: str, checkpoint: str) -> str:
    """The best checkpoint's folder name (MMEngine's, ``/`` replaced by ``_``).

    Example:
        >>> best_name('accuracy', 'epoch_3')
        'best_accuracy_epoch_3'
    """
    return f"{BEST_PREFIX}{metric}_{checkpoint}".replace("/", "_")


class BestTracker:
    """The best value of one metric so far, and the folder that holds it.

    Args:
        save_best: A metric name, or ``'auto'`` (the first metric of the first validation).
        rule: ``'greater'``, ``'less'`` or None (inferred from the name).

    Example:
        >>> best = BestTracker('auto')
        >>> best.improved({'accuracy': 0.5, 'loss': 1.0}), best.metric, best.rule
        (True, 'accuracy', 'greater')
        >>> best.improved({'accuracy': 0.4, 'loss': 0.9})
        False
    """

    def __init__(self, save_best: str, rule: str | None = None) -> None:
        self.save_best = save_best
        self.rule = rule
        self.metric: str | None = None if save_best == "auto" else save_best
        self.score: float | None = None
        self.checkpoint: str | None = None

    def improved(self, metrics: dict[str, float]) -> bool:
        """Whether ``metrics`` beat the best so far (then it becomes the best).

        Raises:
            ConfigError: The metric is not among ``metrics`` (the message lists them).
        """
        if self.metric is None:
            self.metric = next(iter(metrics))
        if self.metric not in metrics:
            raise ConfigError([f"default_hooks.checkpoint.save_best: {self.metric!r} is not a "
                               f"validation metric; the validation gives {sorted(metrics)}"])
        try:
            self.rule = infer_rule(self.metric, self.rule)
        except ValueError as err:
            raise ConfigError([str(err)]) from err
        value = float(metrics[self.metric])
        best = self.score if self.score is not None else (
            -math.inf if self.rule == "greater" else math.inf)
        if math.isnan(value) or not (value > best if self.rule == "greater" else value < best):
            return False
        self.score = value
        return True

    def state(self) -> dict[str, Any] | None:
        """What ``runner_state.json`` keeps (None before any best)."""
        if self.score is None:
            return None
        return {"metric": self.metric, "rule": self.rule, "score": self.score,
                "checkpoint": self.checkpoint}

    def restore(self, saved: dict[str, Any] | None) -> None:
        """Continue from :meth:`state` of a checkpoint (the best of another metric is dropped)."""
        if not saved or (self.save_best != "auto" and saved.get("metric") != self.save_best):
            return
        self.metric, self.score = saved["metric"], float(saved["score"])
        self.rule = self.rule or saved.get("rule")
        self.checkpoint = saved.get("checkpoint")
        logger.info("best %s so far: %s (%s)", self.metric, self.score, self.checkpoint)
