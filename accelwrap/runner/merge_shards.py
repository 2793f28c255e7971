"""Command: merge an FSDP sharded checkpoint's model into one ``model.safetensors``.

Usage::

    python -m accelwrap.runner.merge_shards work_dirs/exp/checkpoints/iter_40 merged/
"""

from __future__ import annotations

import argparse
import sys

from accelwrap.runner.checkpoint import merge_sharded


def main(argv: list[str] | None = None) -> int:
    """Parse ``CHECKPOINT OUTPUT_DIR`` and merge; returns the exit status."""
    parser = argparse.ArgumentParser(description="Merge FSDP model shards into one weights file.")
    parser.add_argument("checkpoint", help="a checkpoint folder holding pytorch_model_fsdp_0/")
    parser.add_argument("output_dir", help="where model.safetensors is written")
    args = parser.parse_args(argv)
    try:
        path = merge_sharded(args.checkpoint, args.output_dir)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
