"""Training on a chosen device: `trainer.accelerator`/`trainer.devices`, a SLURM job's environment, and
posterior weights that load on a CPU-only machine whatever device they were saved from.

No GPU is available here: `accelerator=auto` must pick the CPU and train exactly like `cpu`, and a
state dict whose storages say `cuda:0` (as one saved on a GPU) must load through `posterior_io`.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
import yaml
from sbi.utils import BoxUniform

from sbilab.config import ConfigError, TrainerSettings, load_settings
from sbilab.methods import NPE
from sbilab.posterior_io import SPEC_FILE, STATE_FILE, estimators_state, load_posterior_dir, posterior_spec
from sbilab.spec import check_accelerator
from sbilab.training import train_estimator

TRAINER = {"batch_size": 50, "validation_fraction": 0.1, "stop_after_epochs": 3, "max_epochs": 4}
MDN = {"model": "mdn", "hidden_features": 10, "num_components": 2}
PRIOR_CFG = {"_target_": "sbilab.priors.box_uniform", "low": [-2.0, -2.0], "high": [2.0, 2.0], "name": "box",
             "names": ["a", "b"]}


def _toy(num: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    theta = 4 * torch.rand(num, 2, generator=generator) - 2
    return theta, theta + 0.3 * torch.randn(num, 2, generator=generator)


def _train(accelerator: str):
    theta, x = _toy()
    return train_estimator(NPE(), MDN, theta, x, TrainerSettings(**TRAINER, accelerator=accelerator), seed=5)


@pytest.mark.skipif(torch.cuda.is_available() or torch.backends.mps.is_available(), reason="a GPU would be chosen")
def test_accelerator_auto_without_a_gpu_trains_on_the_cpu_exactly_like_cpu():
    auto, cpu = _train("auto"), _train("cpu")
    assert auto.val_losses == cpu.val_losses
    for (name, a), (_, b) in zip(auto.estimator.state_dict().items(), cpu.estimator.state_dict().items()):
        assert a.device.type == "cpu" and torch.equal(a, b), name


def test_training_inside_a_slurm_job_ignores_slurms_task_layout(monkeypatch):
    """Lightning would read SLURM_* and refuse `--ntasks=2` (or take rank 1 from SLURM_PROCID): a run trains
    one network in one process, whatever job it runs in (a sweep on the cluster, `srun -n 2`)."""
    for key, value in {"SLURM_NTASKS": "2", "SLURM_JOB_NAME": "sbilab", "SLURM_NODELIST": "localhost",
                       "SLURM_JOB_ID": "42", "SLURM_PROCID": "1", "SLURM_LOCALID": "1", "SLURM_NODEID": "0"}.items():
        monkeypatch.setenv(key, value)
    inside = _train("cpu")
    monkeypatch.undo()
    assert inside.val_losses == _train("cpu").val_losses


@pytest.mark.parametrize("values, message", [
    ({"accelerator": "tpu"}, "trainer.accelerator='tpu' is invalid: expected one of cpu, gpu, auto"),
    ({"devices": 2}, "trainer.devices=2 is invalid: expected 1 (one device; choose the GPU with CUDA_VISIBLE_DEVICES"),
])
def test_bad_device_settings_name_the_key(values, message):
    with pytest.raises(ConfigError) as error:
        load_settings(TrainerSettings, values, "trainer")
    assert str(error.value).startswith(message)


@pytest.mark.skipif(torch.cuda.is_available() or torch.backends.mps.is_available(), reason="a GPU is available")
def test_accelerator_gpu_without_a_gpu_is_one_line_before_anything_runs():
    check_accelerator("auto")
    check_accelerator("cpu")
    with pytest.raises(ConfigError, match=r"^trainer\.accelerator=gpu: .*allowed on this machine: cpu, auto$"):
        check_accelerator("gpu")


_SAVED_ON = {"device": None}


def _tag_as_saved_on(obj: object) -> str | None:
    """A torch serialization tagger: while ``_SAVED_ON['device']`` is set, every storage claims that device,
    as in a file written by a process that trained on it."""
    return _SAVED_ON["device"]


torch.serialization.register_package(0, _tag_as_saved_on, lambda obj, location: None)


def test_a_posterior_saved_from_gpu_tensors_loads_and_samples_on_this_cpu(tmp_path: Path):
    theta, x = _toy()
    prior = BoxUniform(-2 * torch.ones(2), 2 * torch.ones(2))
    torch.manual_seed(0)
    estimator = NPE().build_estimator(MDN, theta, x, prior=prior)
    spec = posterior_spec({"_target_": "sbilab.methods.NPE"}, MDN, PRIOR_CFG, 2, 2)
    (tmp_path / SPEC_FILE).write_text(yaml.safe_dump(spec))
    _SAVED_ON["device"] = "cuda:0"
    try:
        torch.save(estimators_state([estimator]), tmp_path / STATE_FILE)
    finally:
        _SAVED_ON["device"] = None
    assert "cuda" not in (tmp_path / SPEC_FILE).read_text()  # the spec is device-free
    if not torch.cuda.is_available():  # the file really says cuda:0: a plain load fails on this machine
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(io.BytesIO((tmp_path / STATE_FILE).read_bytes()), weights_only=True)

    posterior = load_posterior_dir(tmp_path)
    assert all(p.device.type == "cpu" for p in posterior.posterior_estimator.parameters())
    original = NPE().build_posterior(estimator.eval(), prior)
    x_o = torch.zeros(1, 2)
    torch.manual_seed(3)
    loaded_samples = posterior.sample((50,), x=x_o, show_progress_bars=False)
    torch.manual_seed(3)
    assert torch.equal(loaded_samples, original.sample((50,), x=x_o, show_progress_bars=False))
