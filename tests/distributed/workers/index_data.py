"""A dataset that returns each sample's index and a model that records the indices it trains on.

Imported by a config's ``custom_imports`` (tests/distributed/test_world_size_resume.py):
every forward call appends one line ``i,j,k,...`` (the batch's sample indices) to
``$IDS_DIR/rank<RANK>.txt``, so a test can prove which samples each process saw.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from accelwrap.registry import DATASETS, MODELS


@DATASETS.register_module()
class IndexedPoints(Dataset):
    """``num_samples`` random 4-d points with a 2-class label; item ``i`` carries ``index=i``."""

    def __init__(self, num_samples: int = 96) -> None:
        gen = torch.Generator().manual_seed(0)
        self.inputs = torch.randn(num_samples, 4, generator=gen)
        self.labels = (self.inputs.sum(dim=1) > 0).long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"inputs": self.inputs[index], "labels": self.labels[index],
                "index": torch.tensor(index)}


@MODELS.register_module()
class IndexRecorder(nn.Module):
    """A linear classifier; each training forward records ``index`` (see the module)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor,
                index: torch.Tensor) -> torch.Tensor:
        if self.training:  # not the runner's pre-flight pass (eval mode)
            path = Path(os.environ["IDS_DIR"]) / f"rank{os.environ.get('RANK', '0')}.txt"
            with path.open("a") as file:
                file.write(",".join(str(i) for i in index.tolist()) + "\n")
        return nn.functional.cross_entropy(self.linear(inputs), labels)
