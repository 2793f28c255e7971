"""The training runner: ``Runner``, checkpoints, logging, example models and datasets."""

from accelwrap.runner.checkpoint import CheckpointManager, find_latest
from accelwrap.runner.data import DATASETS, build_dataloader
from accelwrap.runner.models import MODELS
from accelwrap.runner.runner import Runner
from accelwrap.runner.sequences import SequenceGRU, VariableLengthSequences  # noqa: F401
from accelwrap.runner.weights import load_weights, merge_sharded

__all__ = ["DATASETS", "MODELS", "CheckpointManager", "Runner", "build_dataloader", "find_latest",
           "load_weights", "merge_sharded"]
