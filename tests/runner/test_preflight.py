"""The pre-flight: a model that does not fit its data is a named error; a fitting one: untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from accelwrap.errors import ConfigError
from accelwrap.runner import preflight
from tests.runner.helpers import records, run

SHORT = ("train_cfg.max_epochs=2", "train_dataloader.batch_size=256")


class NoisyDataset(Dataset):
    """Draws a random number for every item (an augmentation), so reading it moves the RNG."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"inputs": torch.rand(3), "labels": torch.tensor(index % 2)}


class Classifier(nn.Module):
    """Linear -> BatchNorm -> Dropout; ``frozen_norm`` may be kept in eval mode on purpose."""

    def __init__(self, in_features: int = 3) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, 2)
        self.norm = nn.BatchNorm1d(2)
        self.drop = nn.Dropout(0.5)

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(self.drop(self.norm(self.linear(inputs))), labels)


def test_a_fitting_model_keeps_its_modes_buffers_and_the_rng():
    model = Classifier()
    model.norm.eval()  # a frozen norm layer: must stay in eval mode
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    preflight.check(model, {"type": "Classifier"}, DataLoader(NoisyDataset(), batch_size=4))
    assert torch.equal(torch.get_rng_state(), rng)  # the dataset drew numbers: put back
    assert model.training and model.linear.training and model.drop.training
    assert not model.norm.training
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in buffers.items())  # no running stats moved


def test_a_model_that_does_not_fit_names_config_batch_and_error():
    loader = DataLoader(NoisyDataset(), batch_size=4)
    model = Classifier(in_features=5)
    with pytest.raises(ConfigError) as info:
        preflight.check(model, {"type": "Classifier", "in_features": 5}, loader)
    (problem,) = info.value.problems
    assert problem.startswith("model: Classifier(in_features=5) does not fit the data of "
                              "train_dataloader")
    assert "inputs: float32 [2, 3], labels: int64 [2]" in problem
    assert "RuntimeError" in problem and "mat1 and mat2" in problem
    assert model.training  # restored even when the forward raised


def test_a_module_and_a_tuple_dataset_are_described():
    loader = DataLoader(TensorDataset(torch.zeros(6, 4), torch.zeros(6)), batch_size=3)
    model = nn.Bilinear(3, 3, 1)
    with pytest.raises(ConfigError, match=r"model: Bilinear \(a module given to the Runner\) .*"
                                          r"\(0: float32 \[2, 4\], 1: float32 \[2\]\)"):
        preflight.check(model, model, loader)


class Stream(IterableDataset):
    def __iter__(self):
        yield {"inputs": torch.zeros(3)}


class Keyed(Dataset):
    """Indexed by name (its sampler yields names): items 0 and 1 do not exist."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, key: str) -> dict[str, torch.Tensor]:
        return {"inputs": torch.zeros(3) + {"a": 0, "b": 1}[key]}


class OwnStep(nn.Module):
    def forward(self, anything: torch.Tensor) -> torch.Tensor:
        raise AssertionError("never called: train_step models are not run by the pre-flight")

    def train_step(self, batch, optim_wrapper):
        return {}


@pytest.mark.parametrize("model, loader", [
    (nn.Linear(7, 1), DataLoader(Stream())),  # an iterable dataset: nothing to index
    (OwnStep(), DataLoader(NoisyDataset())),  # its own train_step: forward need not fit
    (nn.Linear(7, 1), DataLoader(Keyed(), sampler=["a", "b"])),  # no item 0: not judged
])
def test_what_the_pre_flight_cannot_judge_is_skipped(model, loader):
    preflight.check(model, {"type": type(model).__name__}, loader)


def test_a_run_is_bit_identical_with_and_without_the_pre_flight(tmp_path, monkeypatch):
    calls = []
    real = preflight.forward_problems

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(preflight, "forward_problems", counted)
    with_check = run("digits_sgd_multistep", tmp_path / "with", *SHORT)
    assert calls == [1]
    monkeypatch.setattr(preflight, "check", lambda *args, **kwargs: None)
    without = run("digits_sgd_multistep", tmp_path / "without", *SHORT)
    assert calls == [1]
    a, b = with_check.model.state_dict(), without.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    losses = [[r["loss"] for r in records(work, "train")] for work in (tmp_path / "with",
                                                                       tmp_path / "without")]
    assert losses[0] == losses[1] and len(losses[0]) > 1


def test_train_cfg_preflight_false_leaves_the_forward_pass_out(tmp_path):
    misfit = ("model.in_features=10",)  # the digits have 64 inputs
    with pytest.raises(ConfigError, match="train_cfg.preflight: false"):
        run("digits_sgd_multistep", tmp_path / "checked", *SHORT, *misfit)
    # Switched off, the same model gets as far as its first training forward.
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied") as info:
        run("digits_sgd_multistep", tmp_path / "unchecked", *SHORT, *misfit,
            "+train_cfg.preflight=false")
    assert not isinstance(info.value, ConfigError)


def test_a_model_above_the_size_limit_gets_no_forward_pass(monkeypatch, caplog):
    monkeypatch.setattr(preflight, "MAX_PARAMETERS", 10)
    loader = DataLoader(NoisyDataset(), batch_size=4)
    with caplog.at_level("INFO", logger="accelwrap"):
        preflight.check(Classifier(in_features=5), {"type": "Classifier"}, loader)  # no error
    assert "pre-flight forward pass left out: the model has 16 parameters" in caplog.text


def test_preflight_must_be_a_boolean():
    from accelwrap.runner.train_cfg import parse_train_cfg

    with pytest.raises(ConfigError, match=r"train_cfg.preflight: expected bool, got 'no'"):
        parse_train_cfg({"max_epochs": 1, "preflight": "no"})


def test_a_misfit_model_is_reported_with_the_other_config_problems(tmp_path):
    """One report: the refused learning rate and the model that does not fit its data."""
    with pytest.raises(ConfigError) as raised:
        run("digits_sgd_multistep", tmp_path, *SHORT, "model.in_features=10",
            "optim_wrapper.optimizer.lr=-0.1")
    text = str(raised.value)
    assert "optim_wrapper.optimizer.lr: -0.1 is refused by SGD" in text
    assert "does not fit the data of train_dataloader" in text
    assert not (tmp_path / "checkpoints").exists()


def test_no_forward_pass_is_tried_beside_a_problem_in_a_section_it_is_built_from(tmp_path):
    """A bad train_cfg (the pass's own switch lives there): only the check's report."""
    with pytest.raises(ConfigError) as raised:
        run("digits_sgd_multistep", tmp_path, "train_dataloader.batch_size=256",
            "model.in_features=10", "train_cfg.max_epochs=-1")
    assert "train_cfg.max_epochs: expected an integer >= 1, got -1" in str(raised.value)
    assert "does not fit" not in str(raised.value)
