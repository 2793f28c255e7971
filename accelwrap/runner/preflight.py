"""The pre-flight: does the model fit its data? One forward pass before anything is prepared.

A model config that does not fit the data (``in_features: 10`` for 64 inputs, fewer
classes than labels) otherwise fails inside the first training iteration, as a raw
traceback from deep in torch, after the accelerator, the work dir and the trackers are
set up. The runner calls :func:`check` once the model and the train
dataloader are built: it collates the first two samples of the dataset with the
loader's own ``collate_fn`` (not through the loader, whose sampler would draw random
numbers) and runs the model on them in eval mode under ``torch.no_grad()``. Every
module's train/eval flag is restored and the global random states are put back, so a
run is bit-identical with and without the pre-flight.

An exception becomes a :class:`~accelwrap.errors.ConfigError` naming the model config
(type and arguments), the batch (keys, dtypes and shapes) and the original error.
Skipped: a model with its own ``train_step`` (its ``forward`` need not take a batch),
a dataset without indexing (an ``IterableDataset``) or whose items 0 and 1 cannot be
read or collated (a custom sampler may never ask for them), a model with parameters on
the ``meta`` device. The pass runs where the model is before preparing (the CPU, usually).

Example:
    >>> import torch
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> data = DataLoader(TensorDataset(torch.zeros(4, 3)), batch_size=2)
    >>> check(torch.nn.Linear(3, 1), {'type': 'Linear'}, data)
    >>> try:
    ...     check(torch.nn.Linear(5, 1), {'type': 'Linear', 'in': 5}, data)
    ... except ValueError as err:
    ...     print(err.problems[0])
    model: Linear(in=5) does not fit the data of train_dataloader: a forward pass on 2 samples
    of its dataset (0: float32 [2, 3]) raised RuntimeError: mat1 and mat2 shapes cannot be ...
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.utils.data import IterableDataset, default_collate

from accelwrap.checks.engine import check_config
from accelwrap.errors import ConfigError
from accelwrap.runner.build import build_model
from accelwrap.runner.data import build_dataloader
from accelwrap.runner.loops import call_model
from accelwrap.runner.rng import restore_rng, rng_snapshot

__all__ = ["MAX_PARAMETERS", "check", "describe_batch", "forward_problems", "forward_trial",
           "sample_batch"]

#: Samples in the pre-flight batch (two: a batch dimension that is not 1).
SAMPLES = 2
#: Larger models get no pre-flight forward pass (it runs before the model is on its device).
MAX_PARAMETERS = 50_000_000

logger = logging.getLogger("accelwrap")


def sample_batch(loader: Any, samples: int = SAMPLES) -> Any | None:
    """The first ``samples`` items of ``loader.dataset``, collated; None when not indexable.

    Args:
        loader: A ``DataLoader`` (its ``dataset`` and ``collate_fn`` are used).
        samples: How many items, at most.

    Returns:
        The batch, or None (no dataset, an ``IterableDataset``, an empty one).

    Example:
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> batch = sample_batch(DataLoader(TensorDataset(torch.arange(5.0))))
        >>> batch[0].tolist()
        [0.0, 1.0]
    """
    dataset = getattr(loader, "dataset", None)
    if dataset is None or isinstance(dataset, IterableDataset) or not hasattr(
            dataset, "__getitem__"):
        return None
    count = _count(dataset, samples)
    if count < 1:
        return None
    collate = getattr(loader, "collate_fn", None) or default_collate
    return collate([dataset[index] for index in range(count)])


def _count(dataset: Any, samples: int = SAMPLES) -> int:
    return min(samples, len(dataset)) if hasattr(dataset, "__len__") else samples


def describe_batch(batch: Any) -> str:
    """Keys, dtypes and shapes of a batch, e.g. ``inputs: float32 [2, 64], labels: int64 [2]``.

    Example:
        >>> describe_batch({'inputs': torch.zeros(2, 64), 'labels': torch.zeros(2).long()})
        'inputs: float32 [2, 64], labels: int64 [2]'
        >>> describe_batch((torch.zeros(2, 3), [1, 2]))
        '0: float32 [2, 3], 1: list of 2'
    """
    if isinstance(batch, torch.Tensor):
        return f"{str(batch.dtype).removeprefix('torch.')} {list(batch.shape)}"
    if isinstance(batch, Mapping):
        return ", ".join(f"{key}: {describe_batch(value)}" for key, value in batch.items())
    if isinstance(batch, (list, tuple)):
        if batch and all(isinstance(v, torch.Tensor) for v in batch[:1]):
            return ", ".join(f"{i}: {describe_batch(v)}" for i, v in enumerate(batch))
        return f"list of {len(batch)}"
    return type(batch).__name__


def _model_text(model: nn.Module, model_cfg: Any) -> str:
    if isinstance(model_cfg, Mapping):
        args = ", ".join(f"{k}={v!r}" for k, v in model_cfg.items() if k != "type")
        return f"{model_cfg.get('type', type(model).__name__)}({args})"
    return f"{type(model).__name__} (a module given to the Runner)"


@contextmanager
def _inference(model: nn.Module) -> Iterator[None]:
    """Eval mode, no gradients, and afterwards every module's flag and the RNG as they were."""
    modes = [(module, module.training) for module in model.modules()]
    rng = rng_snapshot()
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for module, training in modes:
            module.training = training
        restore_rng(rng)


def _to_device(batch: Any, device: torch.device) -> Any:
    from accelerate.utils import send_to_device

    return send_to_device(batch, device)


def forward_problems(model: nn.Module, model_cfg: Any, loader: Any,
                     where: str = "train_dataloader") -> list[str]:
    """Run ``model`` on two samples of ``loader``'s dataset; say what a failure means.

    Args:
        model: The built model, not yet prepared.
        model_cfg: Its config (``type`` and arguments), or the module itself.
        loader: The built, not yet prepared, dataloader.
        where: The loader's config key, for the message.

    Returns:
        One sentence naming the model config, the batch's keys and shapes and the
        original error when the forward pass raised; else nothing.
    """
    if callable(getattr(model, "train_step", None)):
        return []
    params = list(model.parameters())
    if any(p.is_meta for p in params):
        return []
    device = params[0].device if params else torch.device("cpu")
    with _inference(model):  # the dataset may draw random numbers too: inside
        try:
            batch = sample_batch(loader)
        except Exception:  # noqa: BLE001 - its sampler may never ask for 0 and 1: not judged
            return []
        if batch is None:
            return []
        try:
            call_model(model, _to_device(batch, device))
        except Exception as err:  # noqa: BLE001 - any failure here is the config's, reported
            return [f"model: {_model_text(model, model_cfg)} does not fit the data of {where}: "
                    f"a forward pass on {_count(loader.dataset)} samples of its dataset "
                    f"({describe_batch(batch)}) raised {type(err).__name__}: {err} -- check "
                    "the model's input and output sizes (in_features, num_classes, ...) "
                    "against the data (train_cfg.preflight: false leaves this pass out, for "
                    "a model that runs only on the GPU)"]
    return []


def _small_enough(model: nn.Module) -> bool:
    count = sum(p.numel() for p in model.parameters())
    if count <= MAX_PARAMETERS:
        return True
    logger.info("pre-flight forward pass left out: the model has %d parameters (more than "
                "%d), too many for a pass before the model is placed", count, MAX_PARAMETERS)
    return False


def _is_plain(node: Any) -> bool:
    """Whether ``node`` is config data (what YAML holds), not built objects."""
    if isinstance(node, Mapping):
        return all(_is_plain(v) for v in node.values())
    if isinstance(node, (list, tuple)):
        return all(_is_plain(v) for v in node)
    return node is None or isinstance(node, (bool, int, float, str))


def check(model: nn.Module, model_cfg: Any, loader: Any, optim_wrapper: Any = None,
          param_scheduler: Any = None, forward: bool = True) -> None:
    """The runner's pre-flight: one report for the model's fit and the optimizer sections.

    ``optim_wrapper`` and ``param_scheduler`` given as configs are checked as ``accelwrap
    check`` does (a Runner built directly, not through ``from_cfg``, gets the same named
    errors, such as ``optim_wrapper.optimizer.lr``), then :func:`forward_problems`.

    Args:
        model: The built model, not yet prepared.
        model_cfg: Its config, or the module itself.
        loader: The built train dataloader, not yet prepared.
        optim_wrapper: The runner's ``optim_wrapper`` argument (a config or a wrapper).
        param_scheduler: The runner's ``param_scheduler`` argument.
        forward: Run the forward pass (``train_cfg.preflight``); it is also left out for
            a model of more than :data:`MAX_PARAMETERS` parameters (logged).

    Raises:
        ConfigError: Every problem found.
    """
    sections = {k: v for k, v in (("optim_wrapper", optim_wrapper),
                                  ("param_scheduler", param_scheduler))
                if v is not None and _is_plain(v)}
    problems = check_config(sections) if "optim_wrapper" in sections else []
    if forward and _small_enough(model):
        problems += forward_problems(model, model_cfg, loader)
    if problems:
        raise ConfigError(problems)


#: The sections the forward pass is built from: a problem in one of them leaves it out.
_FORWARD_SECTIONS = ("model", "train_dataloader", "train_cfg", "custom_imports")


def forward_trial(cfg: Mapping[str, Any], problems: list[str]) -> list[str]:
    """The pre-flight's findings for a config that has other ``problems``, for one report.

    When none of ``problems`` concerns a section the forward pass is built from, the
    model and the train dataloader are built and :func:`forward_problems` runs: a
    config with a wrong learning rate and a model that does not fit its data gets both
    in one error, not the second after the first is fixed. A build that fails, a model
    above :data:`MAX_PARAMETERS` and ``train_cfg.preflight: false`` give nothing here.

    Args:
        cfg: The plain config.
        problems: What the config check found (not empty: the run does not start).

    Returns:
        The model-fit problems (empty when it fits or was not tried).
    """
    sections = {re.match(r"[\w-]*", problem).group() for problem in problems}
    train_cfg = cfg.get("train_cfg")
    if sections & set(_FORWARD_SECTIONS) or not ("model" in cfg and "train_dataloader" in cfg) \
            or (isinstance(train_cfg, Mapping) and train_cfg.get("preflight") is False):
        return []
    try:
        model = build_model(cfg["model"])
        loader = build_dataloader(cfg["train_dataloader"], "train_dataloader")
    except Exception:  # noqa: BLE001 - reported by the run once the other problems are fixed
        return []
    return forward_problems(model, cfg["model"], loader) if _small_enough(model) else []
