"""accelwrap's root registries: the names of ``mmengine.registry.root``.

A project's own registries hang below these (``Registry('optimizer',
parent=OPTIMIZERS, scope='myproj')``). accelwrap fills ``OPTIMIZERS``,
``OPTIM_WRAPPERS``, ``OPTIM_WRAPPER_CONSTRUCTORS`` and ``PARAM_SCHEDULERS`` when it is
imported, and ``MODELS`` / ``DATASETS`` with the runner's examples; the others exist so
that a project's ``registry.py`` written for MMEngine imports unchanged.

Example:
    >>> OPTIMIZERS.scope, OPTIMIZERS.build_func.__name__
    ('accelwrap', 'build_optimizer_from_cfg')
"""

from accelwrap.registry.build_functions import (
    build_model_from_cfg,
    build_optimizer_from_cfg,
    build_runner_from_cfg,
    build_scheduler_from_cfg,
)
from accelwrap.registry.registry import ROOT_SCOPE, Registry

__all__ = [
    "DATASETS", "DATA_SAMPLERS", "EVALUATOR", "FUNCTIONS", "HOOKS", "INFERENCERS",
    "LOG_PROCESSORS", "LOOPS", "METRICS", "MODELS", "MODEL_WRAPPERS", "OPTIMIZERS",
    "OPTIM_WRAPPERS", "OPTIM_WRAPPER_CONSTRUCTORS", "PARAM_SCHEDULERS", "RUNNERS",
    "RUNNER_CONSTRUCTORS", "STRATEGIES", "TASK_UTILS", "TRANSFORMS", "VISBACKENDS",
    "VISUALIZERS", "WEIGHT_INITIALIZERS",
]

# The optimizer layer (filled by accelwrap.optim).
OPTIMIZERS = Registry("OPTIMIZERS", build_func=build_optimizer_from_cfg, scope=ROOT_SCOPE)
OPTIM_WRAPPERS = Registry("OPTIM_WRAPPERS", scope=ROOT_SCOPE)
OPTIM_WRAPPER_CONSTRUCTORS = Registry("OPTIM_WRAPPER_CONSTRUCTORS", scope=ROOT_SCOPE)
PARAM_SCHEDULERS = Registry("PARAM_SCHEDULERS", build_func=build_scheduler_from_cfg,
                            scope=ROOT_SCOPE)
# Filled by accelwrap.runner (example models and bundled datasets) and by users' code.
MODELS = Registry("MODELS", build_func=build_model_from_cfg, scope=ROOT_SCOPE)
DATASETS = Registry("DATASETS", scope=ROOT_SCOPE)
# MMEngine's other roots: nothing in accelwrap builds from them (its runner has its own
# loops, hooks and logging settings); they are here for projects' child registries.
RUNNERS = Registry("RUNNERS", build_func=build_runner_from_cfg, scope=ROOT_SCOPE)
RUNNER_CONSTRUCTORS = Registry("RUNNER_CONSTRUCTORS", scope=ROOT_SCOPE)
LOOPS = Registry("LOOPS", scope=ROOT_SCOPE)
HOOKS = Registry("HOOKS", scope=ROOT_SCOPE)
STRATEGIES = Registry("STRATEGIES", scope=ROOT_SCOPE)
DATA_SAMPLERS = Registry("DATA_SAMPLERS", scope=ROOT_SCOPE)
TRANSFORMS = Registry("TRANSFORMS", scope=ROOT_SCOPE)
MODEL_WRAPPERS = Registry("MODEL_WRAPPERS", scope=ROOT_SCOPE)
WEIGHT_INITIALIZERS = Registry("WEIGHT_INITIALIZERS", scope=ROOT_SCOPE)
METRICS = Registry("METRICS", scope=ROOT_SCOPE)
EVALUATOR = Registry("EVALUATOR", scope=ROOT_SCOPE)
TASK_UTILS = Registry("TASK_UTILS", scope=ROOT_SCOPE)
VISUALIZERS = Registry("VISUALIZERS", scope=ROOT_SCOPE)
VISBACKENDS = Registry("VISBACKENDS", scope=ROOT_SCOPE)
LOG_PROCESSORS = Registry("LOG_PROCESSORS", scope=ROOT_SCOPE)
INFERENCERS = Registry("INFERENCERS", scope=ROOT_SCOPE)
FUNCTIONS = Registry("FUNCTIONS", scope=ROOT_SCOPE)
