"""DeepSpeed ZeRO 1/2 on the CPU through ``accelerate launch``: 2 gloo ranks, real engine.

``launch_configs/deepspeed_cpu.yaml`` with ``DS_ACCELERATOR=cpu`` (DeepSpeed's CPU
accelerator; without oneCCL it picks gloo). The worker
(``workers/deepspeed_grad_norm.py``) compares what accelwrap reports and what the
engine did with the same training done unsharded in one process: the global grad norm
before and after clipping, and the parameters. The launched tests run only where
``deepspeed`` imports and are skipped with its import error otherwise; the checks that
need no engine always run.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from accelwrap.optim import OptimWrapper
from accelwrap.optim import _accelerate_compat as glue
from accelwrap.optim.accelerator import _deepspeed_max_norm
from tests.distributed.launch import REPO, accelerate_launch, once_per_session, read_results

WORKER = Path(__file__).parent / "workers" / "deepspeed_grad_norm.py"
CONFIG = REPO / "launch_configs" / "deepspeed_cpu.yaml"
MAX_NORM = 0.05  # the worker's clip_grad.max_norm


def _deepspeed_import_error() -> str | None:
    """Why ``import deepspeed`` fails here (None: it imports)."""
    if importlib.util.find_spec("deepspeed") is None:
        return "No module named 'deepspeed'"
    try:
        import deepspeed  # noqa: F401
    except Exception as err:  # a broken install: report why, skip
        return f"{type(err).__name__}: {err}"
    return None


IMPORT_ERROR = _deepspeed_import_error()
needs_deepspeed = pytest.mark.skipif(IMPORT_ERROR is not None,
                                     reason=f"deepspeed does not import: {IMPORT_ERROR}")


CASES = [pytest.param(2, 1, id="zero2-counts1"),
         pytest.param(2, 3, id="zero2-counts3"),
         pytest.param(1, 3, id="zero1-counts3")]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every case in one launch per session (the worker runs them one after another, a
    fresh Accelerator and engine each); ``runs(stage, counts)``: that case's per-rank
    results."""
    env = {"DS_ACCELERATOR": "cpu", "ACCELERATE_USE_CPU": "0"}
    args = [str(number) for case in CASES for number in case.values]
    out = once_per_session(tmp_path_factory, "deepspeed_zero", lambda folder: accelerate_launch(
        folder, WORKER, CONFIG, args=args, env=env, timeout=600))
    results = read_results(out)
    return lambda stage, counts: [rank[f"{stage}:{counts}"] for rank in results]


@needs_deepspeed
@pytest.mark.distributed
@pytest.mark.parametrize("stage,counts", CASES)
def test_engine_clips_at_the_wrappers_max_norm(runs, stage, counts):
    results = runs(stage, counts)
    assert [r["rank"] for r in results] == [0, 1]
    for result in results:
        assert result["distributed_type"].endswith("DEEPSPEED") and result["world"] == 2
        assert result["backend"] == "gloo" and result["zero_stage"] == stage
        assert result["gradient_clipping"] == MAX_NORM  # not Accelerate's default 1.0
        ref = result["reference"]
        assert result["engine_norms"] == pytest.approx(ref["before"], rel=0, abs=1e-5)
        assert all(b > a for b, a in zip(ref["before"], ref["after"]))  # clipping happened
        for got, want in zip(result["params"], ref["params"]):
            torch.testing.assert_close(torch.tensor(got), torch.tensor(want), rtol=0, atol=1e-6)


@needs_deepspeed
@pytest.mark.distributed
@pytest.mark.parametrize("stage,counts", CASES)
def test_reported_norms_equal_the_unsharded_norms(runs, stage, counts):
    for result in runs(stage, counts):
        ref = result["reference"]
        assert len(result["before"]) == len(ref["before"])
        assert result["before"] == pytest.approx(ref["before"], rel=0, abs=1e-5)
        assert result["after"] == pytest.approx(ref["after"], rel=0, abs=1e-5)


@needs_deepspeed
@pytest.mark.distributed
def test_settings_needing_the_gradients_are_refused(runs):
    refusals = runs(2, 1)[0]["refusals"]
    assert set(refusals) == {"tokens", "nonfinite", "spike"}
    for name, key in (("tokens", "loss_normalization='tokens'"), ("nonfinite", "nonfinite"),
                      ("spike", "spike")):
        assert refusals[name].startswith(key) and "DeepSpeed" in refusals[name], refusals[name]


def _wrapper(**clip) -> OptimWrapper:
    model = torch.nn.Linear(2, 1)
    return OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1), clip_grad=clip or None)


def test_deepspeed_clipping_follows_the_wrapper():
    assert _deepspeed_max_norm([_wrapper(max_norm=0.5)]) == 0.5
    assert _deepspeed_max_norm([_wrapper()]) == 0.0  # no clip_grad: DeepSpeed must not clip
    assert _deepspeed_max_norm([_wrapper(max_norm=2.0), _wrapper(max_norm=2.0)]) == 2.0


@pytest.mark.parametrize("wrappers,match", [
    ([dict(clip_value=0.1)], "L2 norm only"),
    ([dict(max_norm=1.0, norm_type=1.0)], "L2 norm only"),
    ([dict(max_norm=1.0), dict(max_norm=2.0)], r"different max_norm \[1.0, 2.0\]"),
])
def test_clipping_deepspeed_cannot_do_is_refused(wrappers, match):
    with pytest.raises(ValueError, match=match):
        _deepspeed_max_norm([_wrapper(**clip) for clip in wrappers])


def test_cpu_true_under_a_deepspeed_launch_is_refused(monkeypatch):
    monkeypatch.setitem(os.environ, "ACCELERATE_USE_DEEPSPEED", "true")
    assert glue.deepspeed_requested()
    with pytest.raises(ValueError, match="cpu=True under a DeepSpeed launch"):
        glue.add_deepspeed_cpu_backend({"cpu": True})


def _fake_deepspeed_accelerator(config: dict) -> SimpleNamespace:
    plugin = SimpleNamespace(deepspeed_config=config)
    return SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=plugin))


@pytest.mark.parametrize("given", ["auto", 0.5])
def test_clipping_is_set_quietly_when_the_config_agrees(given):
    accelerator = _fake_deepspeed_accelerator({"gradient_clipping": given})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        glue.set_deepspeed_clipping(accelerator, 0.5)
    assert accelerator.state.deepspeed_plugin.deepspeed_config["gradient_clipping"] == 0.5


def test_a_different_config_value_is_replaced_with_a_warning():
    accelerator = _fake_deepspeed_accelerator({"gradient_clipping": 1.0})  # Accelerate's default
    with pytest.warns(UserWarning, match=r"gradient_clipping=1.0 replaced by 0.0"):
        glue.set_deepspeed_clipping(accelerator, 0.0)
    assert accelerator.state.deepspeed_plugin.deepspeed_config["gradient_clipping"] == 0.0
