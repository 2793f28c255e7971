"""Every third-party optimizer of the catalogue, for real: built from config, stepped, resumed.

Parametrized over each family of ``third_party.FAMILIES`` (MMEngine's ``*_OPTIMIZERS`` lists):
every name that some installable package provides is built through ``build_optim_wrapper``,
stepped on CPU against direct use of the class (the independent reference), and resumed
from a checkpoint file read with ``torch.load(weights_only=True)``, as Accelerate reads
optimizer states. A name whose package is missing is skipped with the package named.
"""

from __future__ import annotations

import importlib.util
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from accelwrap.errors import UnknownTypeError
from accelwrap.optim import build_optim_wrapper
from accelwrap.optim.optimizer import builder, third_party
from accelwrap.registry import OPTIMIZERS

# config keys beyond ``type`` and ``lr`` that a class needs to build or to move on CPU.
EXTRA = {"SGD": {"momentum": 0.9}, "LARS": {"momentum": 0.9}, "RMSprop": {"lr": 1e-3},
         "Adafactor": {"relative_step": False, "scale_parameter": False}}
# bitsandbytes 0.50's CPU kernel of 32-bit AdEMAMix breaks on every parameter shape.
CPU_BROKEN = {"AdEMAMix32bit", "PagedAdEMAMix32bit"}
BROKEN_REASON = ("bitsandbytes (0.50) fails on CPU for every parameter: RuntimeError: output "
                 "with shape [64] doesn't match the broadcast shape [64, 64]")


def installable(family: str) -> list[str]:
    """The names of ``family`` that some package installs today (``pip`` is set)."""
    return [name for name, providers in third_party.FAMILIES[family].items()
            if any(p.pip for p in providers)]


def cases() -> list:
    params = []
    for family in third_party.FAMILIES:
        for name in installable(family):
            marks = [pytest.mark.xfail(raises=RuntimeError, reason=BROKEN_REASON)
                     ] if name in CPU_BROKEN else []
            params.append(pytest.param(name, id=f"{family}-{name}", marks=marks))
    return params


def config(name: str) -> dict:
    lr = 1.0 if name.startswith("DAdapt") else 1e-2  # D-Adaptation's lr is a multiplier
    extra = next((kwargs for key, kwargs in EXTRA.items() if key in name), {})
    return {"type": name, "lr": lr, **extra}


def require(name: str) -> type:
    """The class behind ``name``, or a skip naming the package that is missing."""
    providers = third_party.THIRD_PARTY[name]
    if not any(importlib.util.find_spec(p.module.split(".")[0]) for p in providers):
        pips = " or ".join(p.pip for p in providers if p.pip)
        pytest.skip(f"{pips} is not installed (`pip install {pips}` brings {name})")
    return OPTIMIZERS.get(name)


def tiny_model() -> torch.nn.Module:
    """64x64 weights: as many elements as bitsandbytes' ``min_8bit_size``, so 8-bit states."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Tanh(), torch.nn.Linear(64, 1))


INPUT = torch.randn(32, 64, generator=torch.Generator().manual_seed(1))


def loss_of(model: torch.nn.Module) -> torch.Tensor:
    return model(INPUT).square().mean()


@pytest.mark.parametrize("name", cases())
def test_builds_from_config_and_steps_like_direct_use(name):
    cls = require(name)
    model, reference = tiny_model(), tiny_model()
    wrapper = build_optim_wrapper(model, {"optimizer": config(name)})
    assert type(wrapper.optimizer) is cls
    direct = cls(reference.parameters(), **{k: v for k, v in config(name).items() if k != "type"})
    start = [p.detach().clone() for p in model.parameters()]
    losses = []
    for _ in range(4):
        losses.append(loss_of(model).item())
        wrapper.update_params(loss_of(model))
        direct.zero_grad()
        loss_of(reference).backward()
        direct.step()
    for got, want in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
        assert torch.isfinite(got).all()
    assert not all(map(torch.equal, model.parameters(), start))
    if not name.startswith("DAdapt"):  # D-Adaptation starts from steps of ~1e-6
        assert loss_of(model).item() < losses[0]


@pytest.mark.parametrize("name", cases())
def test_state_dict_resumes_from_a_weights_only_checkpoint(name, tmp_path):
    require(name)
    model, resumed = tiny_model(), tiny_model()
    wrapper = build_optim_wrapper(model, {"optimizer": config(name)})
    for _ in range(3):
        wrapper.update_params(loss_of(model))
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": model.state_dict(), "optimizer": wrapper.state_dict()}, path)
    checkpoint = torch.load(path, weights_only=True)
    resumed.load_state_dict(checkpoint["model"])
    resumed_wrapper = build_optim_wrapper(resumed, {"optimizer": config(name)})
    resumed_wrapper.load_state_dict(checkpoint["optimizer"])
    for _ in range(2):
        wrapper.update_params(loss_of(model))
        resumed_wrapper.update_params(loss_of(resumed))
    for got, want in zip(resumed.parameters(), model.parameters()):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    buffer = io.BytesIO()  # a second save of the resumed state reads back the same way
    torch.save(resumed_wrapper.state_dict(), buffer)
    buffer.seek(0)
    assert torch.load(buffer, weights_only=True).keys() == wrapper.state_dict().keys()


def test_bitsandbytes_names_are_every_optimizer_class_it_has():
    bnb_optim = pytest.importorskip("bitsandbytes.optim")
    classes = {name for name, obj in vars(bnb_optim).items()
               if isinstance(obj, type) and issubclass(obj, torch.optim.Optimizer)}
    ours = {name.removeprefix("bnb_") for name in third_party.FAMILIES["bitsandbytes"]}
    assert ours == classes
    assert set(builder.BITSANDBYTES_OPTIMIZERS) == set(third_party.FAMILIES["bitsandbytes"])


def test_bitsandbytes_and_transformers_classes_are_mmengines():
    pytest.importorskip("bitsandbytes")
    pytest.importorskip("transformers")
    mm = pytest.importorskip("mmengine.optim.optimizer.builder")
    from mmengine.registry import OPTIMIZERS as MM_OPTIMIZERS

    for mm_list, ours in [(mm.BITSANDBYTES_OPTIMIZERS, builder.BITSANDBYTES_OPTIMIZERS),
                          (mm.TRANSFORMERS_OPTIMIZERS, builder.TRANSFORMERS_OPTIMIZERS)]:
        assert {MM_OPTIMIZERS.get(n) for n in mm_list} == {OPTIMIZERS.get(n) for n in ours}


# --- the three ways a name can be unavailable, each with its own message -------------------

BLOCKER = """
import json, sys
BLOCKED = set(sys.argv[1].split(","))
class Block:  # makes the listed packages look not installed
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block)
sys.path.insert(0, sys.argv[2])
from accelwrap.errors import UnknownTypeError
from accelwrap.registry import OPTIMIZERS
messages = {}
for name in sys.argv[3].split(","):
    try:
        OPTIMIZERS.get(name)
    except UnknownTypeError as err:
        messages[name] = str(err)
print(json.dumps(messages))
"""


def fake_distribution(root: Path, dist: str, version: str, files: dict[str, str]) -> None:
    """Write an installed-looking distribution (its modules and a dist-info) under ``root``."""
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(textwrap.dedent(text))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "top_level.txt").write_text("\n".join({f.split("/")[0] for f in files}) + "\n")


def messages(site: Path, blocked: list[str], names: list[str]) -> dict[str, str]:
    out = subprocess.run([sys.executable, "-c", BLOCKER, ",".join(blocked), str(site),
                          ",".join(names)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def test_not_installed_names_the_pip_install_that_brings_a_working_one(tmp_path):
    got = messages(tmp_path, ["bitsandbytes", "sophia_opt", "sophia", "Sophia", "transformers",
                              "lion_pytorch", "dadaptation"],
                   ["AdamW8bit", "bnb_AdamW", "SophiaG", "Adafactor", "Lion", "DAdaptAdam"])
    pips = {"AdamW8bit": "bitsandbytes", "bnb_AdamW": "bitsandbytes", "SophiaG": "sophia-opt",
            "Adafactor": "transformers", "Lion": "lion-pytorch", "DAdaptAdam": "dadaptation"}
    for name, pip in pips.items():
        assert got[name].startswith(f"'{name}' is not available in OPTIMIZERS: it comes from an "
                                    f"optional package that is not installed; `pip install "
                                    f"{pip}` brings it"), got[name]
    assert "latest release 0.2.5 fails to import" in got["SophiaG"]
    assert "'TorchAdafactor'" in got["Adafactor"]


@pytest.mark.parametrize("name", ["Sophia", "DecoupledSophia", "Sophia2"])
def test_a_name_no_package_provides_today_says_so_without_a_pip_install(name):
    with pytest.raises(UnknownTypeError) as info:
        OPTIMIZERS.get(name)
    message = str(info.value)
    assert "no package that installs today provides a working one" in message
    assert "`pip install Sophia-Optimizer`" not in message and "`import Sophia` fails" in message
    assert message.endswith("SophiaG comes from `pip install sophia-opt`")
    assert name not in builder.SOPHIA_OPTIMIZERS


def test_installed_but_import_fails_names_package_version_and_error(tmp_path):
    # What `pip install Sophia-Optimizer` (0.2.5) installs: a `sophia` that cannot import.
    fake_distribution(tmp_path, "Sophia-Optimizer", "0.2.5", {
        "sophia/__init__.py": "from sophia.sophia import SophiaG, sophiag\n",
        "sophia/sophia.py": "class SophiaG:\n    pass\n"})
    got = messages(tmp_path, ["sophia_opt"], ["SophiaG"])["SophiaG"]
    assert got.startswith("OPTIMIZERS 'SophiaG' cannot be loaded: Sophia-Optimizer 0.2.5 (module "
                          "`sophia`) is installed, but `import sophia` fails (ImportError: cannot "
                          "import name 'sophiag' from 'sophia.sophia'"), got
    assert "`pip install sophia-opt` brings it" in got


def test_installed_imports_but_lacks_the_class_and_nothing_else_to_install(tmp_path):
    fake_distribution(tmp_path, "bitsandbytes", "0.1.0", {"bitsandbytes/__init__.py": "",
                                                           "bitsandbytes/optim.py": ""})
    fake_distribution(tmp_path, "sophia-opt", "9.9", {
        "sophia_opt/__init__.py": "raise RuntimeError('needs CUDA')\n"})
    got = messages(tmp_path, ["sophia", "Sophia"], ["AdamW8bit", "SophiaG"])
    assert got["AdamW8bit"] == ("OPTIMIZERS 'AdamW8bit' cannot be loaded: bitsandbytes 0.1.0 "
                                "(module `bitsandbytes`) is installed and imports, but "
                                "`bitsandbytes.optim` has no AdamW8bit; no other installed "
                                "package provides it")
    assert got["SophiaG"].startswith(
        "OPTIMIZERS 'SophiaG' cannot be loaded: sophia-opt 9.9 (module `sophia_opt`) is "
        "installed, but `import sophia_opt` fails (RuntimeError: needs CUDA)")
    assert "pip install" not in got["AdamW8bit"] + got["SophiaG"]
