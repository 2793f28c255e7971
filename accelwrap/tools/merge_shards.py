"""The ``accelwrap merge-shards`` command: an FSDP sharded checkpoint's model as one file.

Usage::

    accelwrap merge-shards work_dirs/exp/checkpoints/iter_40 merged/

Before anything is written, the checkpoint's files are checked against its manifest, as a
resume checks them: a damaged one is an error naming the file, the checkpoint and the
newest intact sharded checkpoint beside it (a folder without a manifest is merged, with a
note).

Example:
    >>> run_merge_shards('no/such/checkpoint', 'merged')  # doctest: +SKIP
    1
"""

from __future__ import annotations

import sys

from accelwrap.errors import DamagedCheckpointError
from accelwrap.runner.checkpoint_find import verify_before_reading
from accelwrap.runner.weights import merge_sharded

__all__ = ["run_merge_shards"]


def run_merge_shards(checkpoint: str, output_dir: str) -> int:
    """Merge ``checkpoint``'s model shards into ``output_dir/model.safetensors``.

    Args:
        checkpoint: A checkpoint folder holding ``pytorch_model_fsdp_0/``.
        output_dir: Where ``model.safetensors`` is written.

    Returns:
        0 on success (the merged file's path is printed), 1 when there are no shards or
        a file of the checkpoint is damaged (nothing is written then).
    """
    try:
        note = verify_before_reading(checkpoint, holding="pytorch_model_fsdp_0")
        if note is not None:
            print(f"accelwrap merge-shards: note: {note}", file=sys.stderr)
        path = merge_sharded(checkpoint, output_dir)
    except (FileNotFoundError, DamagedCheckpointError) as err:
        print(f"accelwrap merge-shards: {err}", file=sys.stderr)
        return 1
    print(path)
    return 0
