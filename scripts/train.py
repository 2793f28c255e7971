"""Train from a YAML config: the script ``accelerate launch`` runs (``accelwrap train``).

Usage::

    python scripts/train.py configs/digits_sgd_multistep.yaml [key=value ...]
    accelerate launch --config_file launch_configs/cpu_2proc.yaml scripts/train.py \\
        configs/digits_sgd_multistep.yaml --work-dir work_dirs/ddp [--resume auto|PATH]

``--config FILE`` also names the config; ``--overwrite`` starts over in a work dir that
holds checkpoints. Exit status: 0 done, 1 a user error (a failed checkpoint write under
``default_hooks.checkpoint.on_error: raise`` included), 74 trained to the end but its last
checkpoint could not be written (``on_error: warn``; the last line names the checkpoint
``--resume auto`` continues from), 75 preempted (a checkpoint was written; ``--resume
auto`` continues). Started by a launcher on Linux, the process gets SIGTERM (a preemption)
when the launcher exits (:func:`accelwrap.runner.preemption.die_with_launcher`). The
logic lives in :mod:`accelwrap.tools.train`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

LAUNCHER = os.getppid()  # before the imports: a launcher that dies meanwhile is noticed

try:
    import accelwrap  # noqa: F401
except ImportError:  # running from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from accelwrap.runner.preemption import die_with_launcher  # noqa: E402 - after the fallback
from accelwrap.tools.train import exit_now, main  # noqa: E402

if __name__ == "__main__":
    die_with_launcher(LAUNCHER)
    exit_now(main())
