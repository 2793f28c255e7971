"""Datasets bundled for the example configs, and dataloaders built from config dicts.

``DATASETS`` holds map-style datasets that need no download: scikit-learn's
``load_digits`` (8x8 handwritten digits, 1,797 images) and a synthetic 2-D mixture of
Gaussians on a ring for the GAN example. Every sample is a dict, so a model's
``forward(**batch)`` receives named tensors.

Example:
    >>> loader = build_dataloader(dict(dataset=dict(type='DigitsDataset', split='val'),
    ...                                batch_size=16, shuffle=False))
    >>> batch = next(iter(loader))
    >>> tuple(batch['inputs'].shape), batch['labels'].dtype
    ((16, 64), torch.int64)
"""

from __future__ import annotations

import importlib.util
import inspect
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from accelwrap.registry import DATASETS, check_arguments, to_plain
from accelwrap.runner.data_position import RESUME_DATA

__all__ = ["DATASETS", "DigitsDataset", "RingGaussians2D", "build_dataloader", "build_dataset",
           "digits_arrays", "loader_signature", "loader_value_problems"]


def loader_signature(batch_size: int = 32, shuffle: bool = True, num_workers: int = 0,
                     drop_last: bool = False, pin_memory: bool = False,
                     persistent_workers: bool = False, resume_data: str = "exact") -> None:
    """The keys a dataloader config may set besides ``dataset``, with types and defaults.

    Never called: :func:`build_dataloader` and ``accelwrap check`` bind a config's
    keys against it (names and value types), and its defaults are the loader's.
    ``resume_data`` is accelwrap's, not the ``DataLoader``'s: ``'approximate'`` lets a
    resume on another world size or batch size continue a data source whose order cannot
    be continued at a sample (:mod:`accelwrap.runner.data_position`).

    Example:
        >>> from accelwrap.checks import argument_problems
        >>> argument_problems(loader_signature, {'batch_size': 'abc'}, 'train_dataloader')
        ["train_dataloader.batch_size: expected int, got 'abc' (str) [loader_signature]"]
    """


# Keys of a dataloader config besides ``dataset``, with their defaults.
LOADER_DEFAULTS: dict[str, Any] = {name: param.default for name, param
                                   in inspect.signature(loader_signature).parameters.items()}


class _TensorDataset(Dataset):
    """Named tensors of equal length; item ``i`` is ``{name: tensor[i]}``."""

    def __init__(self, **tensors: torch.Tensor) -> None:
        lengths = {len(t) for t in tensors.values()}
        if len(lengths) != 1:
            raise ValueError(f"all tensors need the same length, got {lengths}")
        self.tensors = tensors

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {name: t[index] for name, t in self.tensors.items()}


def digits_arrays() -> tuple[Any, Any]:
    """The pixels (1,797 x 64, float64, 0-16) and labels (int64) of scikit-learn's digits.

    Read straight from the file scikit-learn ships (``sklearn/datasets/data/
    digits.csv.gz``, the file ``load_digits`` reads), found without importing
    scikit-learn: that import brings in SciPy, 1.3-1.7 s of every training process here.
    Falls back to ``load_digits`` where the file is not at that place.

    Raises:
        ImportError: scikit-learn is not installed.

    Example:
        >>> pixels, labels = digits_arrays()
        >>> pixels.shape, int(labels[:10].sum())
        ((1797, 64), 45)
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is None:
        raise ImportError("DigitsDataset needs scikit-learn: pip install 'accelwrap[data]'")
    import numpy

    bundled = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    if bundled.is_file():
        table = numpy.loadtxt(bundled, delimiter=",")
        return table[:, :-1], table[:, -1].astype(numpy.int64)
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.data, digits.target


@DATASETS.register_module()
class DigitsDataset(_TensorDataset):
    """scikit-learn's bundled 8x8 digits, scaled to [0, 1], split deterministically.

    Args:
        split: ``'train'``, ``'val'`` or ``'all'``.
        val_fraction: Share of the images held out for ``'val'``.
        split_seed: Seed of the fixed permutation that decides the split.

    Example:
        >>> len(DigitsDataset('train')) + len(DigitsDataset('val'))
        1797
    """

    def __init__(self, split: str = "train", val_fraction: float = 0.2,
                 split_seed: int = 0) -> None:
        if split not in ("train", "val", "all"):
            raise ValueError(f"DigitsDataset: split must be 'train', 'val' or 'all', got {split!r}")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"DigitsDataset: val_fraction must be in (0, 1), got {val_fraction!r}")
        pixels, targets = digits_arrays()
        images = torch.tensor(pixels, dtype=torch.float32) / 16.0
        labels = torch.tensor(targets, dtype=torch.int64)
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(split_seed))
        n_val = int(round(len(labels) * val_fraction))
        keep = {"val": order[:n_val], "train": order[n_val:],
                "all": torch.arange(len(labels))}[split]
        super().__init__(inputs=images[keep], labels=labels[keep])


def ring_modes(num_modes: int, radius: float) -> torch.Tensor:
    """Centres of ``num_modes`` Gaussians evenly spaced on a circle, shape ``(num_modes, 2)``."""
    angles = torch.arange(num_modes, dtype=torch.float64) * (2 * math.pi / num_modes)
    return (radius * torch.stack([angles.cos(), angles.sin()], dim=1)).float()


@DATASETS.register_module()
class RingGaussians2D(_TensorDataset):
    """Synthetic 2-D points from ``num_modes`` Gaussians on a ring (the classic GAN toy).

    Args:
        num_samples: How many points.
        num_modes: How many Gaussians.
        radius: Radius of the ring.
        std: Standard deviation of each Gaussian.
        seed: Seed of the generator that draws the points (fixed, independent of
            the global RNG).

    Example:
        >>> RingGaussians2D(num_samples=10)[0]['inputs'].shape
        torch.Size([2])
    """

    def __init__(self, num_samples: int = 2048, num_modes: int = 8, radius: float = 2.0,
                 std: float = 0.05, seed: int = 0) -> None:
        if num_samples < 1 or num_modes < 1:
            raise ValueError(f"RingGaussians2D: num_samples and num_modes must be >= 1, "
                             f"got {num_samples!r} and {num_modes!r}")
        gen = torch.Generator().manual_seed(seed)
        which = torch.randint(num_modes, (num_samples,), generator=gen)
        points = (ring_modes(num_modes, radius)[which]
                  + std * torch.randn(num_samples, 2, generator=gen))
        super().__init__(inputs=points)


def build_dataset(cfg: Mapping | Dataset) -> Dataset:
    """Build a dataset from a ``DATASETS`` config, or return a dataset as is.

    Args:
        cfg: ``dict(type=..., **kwargs)`` or a ``Dataset``.

    Returns:
        The dataset.
    """
    if isinstance(cfg, Dataset):
        return cfg
    return DATASETS.build(cfg)


def build_dataloader(cfg: Mapping | DataLoader, where: str = "train_dataloader") -> DataLoader:
    """Build a plain PyTorch ``DataLoader`` from a config (not yet prepared by Accelerate).

    Args:
        cfg: A ``DataLoader`` (returned as is) or a mapping with ``dataset`` and any of
            ``batch_size``, ``shuffle``, ``num_workers``, ``drop_last``,
            ``pin_memory``, ``persistent_workers``; never modified.
        where: The config key, used in error messages.

    Returns:
        The dataloader.

    Raises:
        TypeError: ``cfg`` is neither, or has keys a dataloader does not take.
        ValueError: ``dataset`` is missing.
    """
    if isinstance(cfg, DataLoader):
        return cfg
    if not isinstance(cfg, Mapping) and not hasattr(cfg, "keys"):
        raise TypeError(f"{where}: expected a DataLoader or a dict with 'dataset' and "
                        f"'batch_size', got {type(cfg).__name__}")
    args = to_plain(cfg)
    if "dataset" not in args:
        raise ValueError(f"{where}: the config has no 'dataset' key (got keys {sorted(args)})")
    dataset = build_dataset(args.pop("dataset"))
    check_arguments(loader_signature, args, where)
    kwargs = {**LOADER_DEFAULTS, **args}
    problems = loader_value_problems(kwargs, where)
    if problems:
        raise ValueError("; ".join(problems))
    resume_data = kwargs.pop("resume_data")
    if kwargs["num_workers"] == 0:
        kwargs["persistent_workers"] = False
    loader = DataLoader(dataset, **kwargs)
    loader.resume_data = resume_data
    return loader


def loader_value_problems(args: Mapping[str, Any], where: str = "train_dataloader") -> list[str]:
    """Values of a dataloader config outside their range, one message each.

    Args:
        args: The config's keys besides ``dataset``.
        where: The config key, for the messages.

    Returns:
        The messages (empty when every value fits).

    Example:
        >>> print(loader_value_problems({'batch_size': 0, 'num_workers': 2})[0])
        train_dataloader.batch_size: expected an integer >= 1 (samples per batch and process), got 0
    """
    problems = []
    limits = {"batch_size": (1, "samples per batch and process"),
              "num_workers": (0, "worker processes; 0 loads in the training process")}
    for key, (minimum, meaning) in limits.items():
        value = args.get(key, LOADER_DEFAULTS[key])
        if isinstance(value, int) and not isinstance(value, bool) and value < minimum:
            problems.append(f"{where}.{key}: expected an integer >= {minimum} ({meaning}), "
                            f"got {value!r}")
    mode = args.get("resume_data", "exact")
    if mode not in RESUME_DATA:
        problems.append(f"{where}.resume_data: expected one of {list(RESUME_DATA)}, got {mode!r}")
    return problems
