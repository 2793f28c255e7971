"""Run a Python script as a real multi-process CPU job over gloo, the way users launch.

Two launchers, both real processes (see ``shared/ACCELERATE_NOTES.md``):

* :func:`torchrun` -- ``python -m torch.distributed.run --standalone --nproc_per_node N``
  with ``ACCELERATE_USE_CPU=1`` so ``Accelerator()`` joins the gloo group.
* :func:`accelerate_launch` -- ``python -m accelerate.commands.launch`` with a YAML
  config (for example ``launch_configs/cpu_2proc.yaml``).

A worker script reports results by writing JSON files into ``$RESULT_DIR``
(one per rank, e.g. ``rank0.json``); :func:`read_results` collects them. A worker
ends with :func:`finish_worker` after its ``main()`` returned.

Example (inside a test)::

    out = torchrun(tmp_path, SCRIPT, nproc=2, args=["--steps", "8"])
    results = read_results(out)          # [rank0_dict, rank1_dict]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, NoReturn

from filelock import FileLock

REPO = Path(__file__).resolve().parents[2]


def _env(result_dir: Path, extra: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "ACCELERATE_USE_CPU": "1",
        "OMP_NUM_THREADS": "1",
        "RESULT_DIR": str(result_dir),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra or {})
    return env


def _run(cmd: list[str], result_dir: Path, env: dict[str, str] | None,
         timeout: float, check: bool) -> subprocess.CompletedProcess:
    result_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(cmd, env=_env(result_dir, env), capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n"
                             f"--- stdout ---\n{proc.stdout[-6000:]}\n"
                             f"--- stderr ---\n{proc.stderr[-6000:]}")
    return proc


def torchrun(result_dir: Path, script: str | Path, nproc: int = 2, args: list[str] = (),
             env: dict[str, str] | None = None, timeout: float = 300,
             check: bool = True) -> Path:
    """Run ``script`` under torchrun with ``nproc`` CPU processes; return ``result_dir``.

    Args:
        result_dir: Folder the workers write their JSON results into.
        script: Path of the worker script.
        nproc: Number of processes.
        args: Extra command-line arguments for the script.
        env: Extra environment variables.
        timeout: Seconds before the job is killed.
        check: Raise with the job's output when it fails.

    Returns:
        ``result_dir``.
    """
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", str(script), *args]
    _run(cmd, Path(result_dir), env, timeout, check)
    return Path(result_dir)


def accelerate_launch(result_dir: Path, script: str | Path, config_file: str | Path,
                      args: list[str] = (), env: dict[str, str] | None = None,
                      timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``script`` with ``accelerate launch --config_file config_file``.

    Args:
        result_dir: Folder the workers write their JSON results into.
        script: Path of the script to launch.
        config_file: An Accelerate launch YAML.
        args: Extra command-line arguments for the script.
        env: Extra environment variables.
        timeout: Seconds before the job is killed.
        check: Raise with the job's output when it fails.

    Returns:
        The finished process (stdout/stderr captured).
    """
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(config_file), str(script), *args]
    return _run(cmd, Path(result_dir), env, timeout, check)


def once_per_session(tmp_path_factory, name: str, make: Callable[[Path], object]) -> Path:
    """``make(folder)`` run once per pytest session, even across xdist workers; ``folder``.

    A module-scoped fixture runs once in each xdist worker that runs one of its tests;
    a job behind one (a launch) then runs twice under ``-n 2``. The first worker here
    runs ``make`` under a file lock and marks ``folder`` done; the others wait and reuse
    it (if ``make`` raised, the next one tries again and reports its own failure).

    Args:
        tmp_path_factory: pytest's fixture (its base folder is per worker; the session's
            is the one above it under xdist).
        name: The folder's name, unique in the session.
        make: Writes the results into the folder it is given.

    Returns:
        The folder ``make`` wrote into.
    """
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    folder, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.is_file():
            folder.mkdir(exist_ok=True)
            make(folder)
            done.touch()
    return folder


def write_result(data: dict, rank: int | None = None) -> None:
    """Called by a worker: write ``data`` as ``$RESULT_DIR/rank{rank}.json``."""
    rank = int(os.environ.get("RANK", "0")) if rank is None else rank
    path = Path(os.environ["RESULT_DIR"]) / f"rank{rank}.json"
    path.write_text(json.dumps(data))


def finish_worker() -> NoReturn:
    """Called last by a worker whose work succeeded: leave without interpreter teardown.

    The process group is destroyed first, then the process exits at once. A gloo group
    (live or destroyed) can abort the interpreter's teardown ("terminate called without
    an active exception"), which turns a passed job into a failed one now and then; the
    results are on disk by now, so nothing is lost by skipping the teardown.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def read_results(result_dir: Path) -> list[dict]:
    """Read every ``rank*.json`` in ``result_dir``, ordered by rank."""
    files = sorted(Path(result_dir).glob("rank*.json"), key=lambda p: int(p.stem[4:]))
    return [json.loads(p.read_text()) for p in files]
