"""The optimizer catalogue: torch's optimizers, the third-party names, lazy imports.

Each third-party optimizer is stepped and resumed in ``test_third_party.py``.
"""

from __future__ import annotations

import importlib.util
import inspect
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from accelwrap.errors import UnknownTypeError
from accelwrap.optim.optimizer.third_party import THIRD_PARTY
from accelwrap.registry import OPTIMIZERS


def torch_optimizer_classes() -> dict[str, type]:
    """Every optimizer class torch.optim exports, by its torch name."""
    return {name: cls for name, cls in vars(torch.optim).items()
            if inspect.isclass(cls) and issubclass(cls, torch.optim.Optimizer)
            and cls is not torch.optim.Optimizer}


def registered_name(torch_name: str) -> str:
    return "TorchAdafactor" if torch_name == "Adafactor" else torch_name


@pytest.mark.parametrize("torch_name", sorted(torch_optimizer_classes()))
def test_every_torch_optimizer_builds_and_steps(torch_name):
    cls = torch_optimizer_classes()[torch_name]
    assert OPTIMIZERS.get(registered_name(torch_name)) is cls
    weight = torch.nn.Parameter(torch.randn(5, 3, generator=torch.Generator().manual_seed(0)))
    optimizer = OPTIMIZERS.build({"type": registered_name(torch_name), "lr": 0.01},
                                 default_args={"params": [weight]})
    assert isinstance(optimizer, cls)
    before = weight.detach().clone()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        rows = F.embedding(torch.tensor([0, 2]), weight, sparse=torch_name == "SparseAdam")
        loss = rows.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    assert not torch.equal(weight.detach(), before)


def test_torch_adafactor_does_not_take_transformers_name():
    if "Adafactor" in OPTIMIZERS:  # only when transformers is installed
        assert OPTIMIZERS.get("Adafactor").__module__.startswith("transformers")
    assert OPTIMIZERS.get("TorchAdafactor") is torch.optim.Adafactor


def test_names_match_mmengines_catalogue():
    mm_builder = pytest.importorskip("mmengine.optim.optimizer.builder")
    from mmengine.registry import OPTIMIZERS as MM_OPTIMIZERS

    names = [registered_name(n) for n in mm_builder.TORCH_OPTIMIZERS if n != "Optimizer"]
    names += mm_builder.DADAPTATION_OPTIMIZERS + mm_builder.LION_OPTIMIZERS
    assert names and all(OPTIMIZERS.get(n) is MM_OPTIMIZERS.get(n) for n in names)


def test_catalogue_lists_every_requested_third_party_name():
    wanted = {"DAdaptAdaGrad", "DAdaptAdam", "DAdaptSGD", "Lion", "SophiaG", "AdamW8bit",
              "Adam8bit", "Adagrad8bit", "PagedAdam8bit", "PagedAdamW8bit", "LAMB8bit",
              "LARS8bit", "RMSprop8bit", "Lion8bit", "PagedLion8bit", "SGD8bit", "Adafactor"}
    assert wanted <= set(THIRD_PARTY)
    for name in wanted:  # each is either registered or explains how to get it
        if name not in OPTIMIZERS:
            with pytest.raises(UnknownTypeError, match="pip install"):
                OPTIMIZERS.get(name)


def test_import_is_lazy_about_optional_and_slow_packages():
    code = ("import sys, accelwrap; "
            "print(sorted(m for m in ('lion_pytorch', 'dadaptation', 'transformers', 'sophia_opt', "
            "'bitsandbytes', 'torch.distributed.optim') if m in sys.modules)); "
            "from accelwrap.registry import OPTIMIZERS; OPTIMIZERS.get('Lion'); "
            "print('lion_pytorch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = out.stdout.split("\n")
    assert lines[0] == "[]"
    if importlib.util.find_spec("lion_pytorch") is not None:
        assert lines[1] == "True"


def test_zero_redundancy_optimizer_resolves_its_local_type_first():
    from accelwrap.optim import ZeroRedundancyOptimizer

    assert OPTIMIZERS.get("ZeroRedundancyOptimizer") is ZeroRedundancyOptimizer
    params = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(UnknownTypeError,
                       match="'SDG' is not registered in OPTIMIZERS; did you mean 'SGD'"):
        ZeroRedundancyOptimizer(params, optimizer_type="SDG", lr=0.1)
    with pytest.raises(TypeError, match="optimizer_type must name a local torch.optim.Optimizer"):
        ZeroRedundancyOptimizer(params, optimizer_type="ZeroRedundancyOptimizer", lr=0.1)
