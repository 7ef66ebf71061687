"""Every option of every config group composes, instantiates and fits the default run."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from sbilab.config import ConfigError, check_config
from sbilab.spec import instantiate_part, part_config

CONF = Path(__file__).resolve().parents[1] / "conf"
GROUPS = ("simulator", "prior", "summary", "estimator", "method", "trainer", "diagnostics", "tracking", "simulation",
          "observation")


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def test_default_composition_is_the_tutorial():
    cfg = _compose([])
    assert cfg.simulator.name == "hodgkin_huxley" and cfg.prior.name == "hh_box"
    assert cfg.summary.name == "hh_features" and cfg.method.name == "npe"
    # sbi's MAF (zuko's), learning θ on the box's unbounded space: the default that passes the HH gates
    assert cfg.estimator.model == "zuko_maf" and cfg.estimator.z_score_theta == "transform_to_unconstrained"
    # 30,000 simulations, batches of 1,000 at 2e-3 falling along a cosine over 300 epochs (docs/calibration.md)
    assert cfg.trainer.lr_decay.schedule == "cosine" and cfg.trainer.max_epochs == 300
    assert cfg.trainer.learning_rate == 2e-3 and cfg.trainer.batch_size == 1000
    assert list(cfg.estimator.hidden_features) == [64, 64]
    assert list(cfg.prior.low) == [0.5, 1e-4] and list(cfg.prior.high) == [80.0, 15.0]
    assert list(cfg.prior.names) == ["gbar_Na", "gbar_K"]
    assert list(cfg.observation.theta) == [50.0, 5.0]
    assert cfg.simulation.num_simulations == 30_000
    assert cfg.simulator.noise_scale == 0.1 and cfg.simulator.dt == 0.01
    assert cfg.tracking.uri.startswith("sqlite:////") and cfg.tracking.uri.endswith("/mlruns/mlflow.db")
    check_config(cfg)


#: values that generic options leave to the user (``???``), as their config files' comments show
GIVEN = {
    ("simulator", "function"): ["simulator.fn=math:hypot"],
    ("prior", "box"): ["prior.low=[0,0]", "prior.high=[1,1]", "prior.names=[a,b]"],
    ("prior", "log_uniform"): ["prior.low=[0.1,1]", "prior.high=[1,10]", "prior.names=[a,b]"],
    ("prior", "normal"): ["prior.loc=[0,0]", "prior.scale=[1,1]", "prior.names=[a,b]"],
    ("prior", "log_normal"): ["prior.loc=[0,0]", "prior.scale=[1,1]", "prior.names=[a,b]"],
    ("prior", "gamma"): ["prior.concentration=[2,2]", "prior.rate=[1,1]", "prior.names=[a,b]"],
    ("prior", "beta"): ["prior.alpha=[2,2]", "prior.beta=[5,5]", "prior.names=[a,b]"],
    ("prior", "multivariate_normal"): ["prior.loc=[0,0]", "prior.covariance=[[1,0.5],[0.5,1]]", "prior.names=[a,b]"],
    ("prior", "distribution"): ["prior.distribution=torch.distributions.StudentT", "+prior.df=[3,3]",
                                "+prior.loc=[0,0]", "+prior.scale=[1,1]", "prior.names=[a,b]"],
    ("prior", "independent"): ["prior.parts=[{_target_:sbilab.priors.box_uniform,low:[0],high:[1],names:[p]},"
                               "{_target_:sbilab.priors.log_normal,loc:[0,0],scale:[1,1],names:[k1,k2]}]",
                               "prior.names=[p,k1,k2]"],
}


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_composes(group, option):
    cfg = _compose([f"{group}={option}", *GIVEN.get((group, option), [])])
    assert cfg[group].get("name", option) == option or group in ("trainer", "diagnostics", "tracking", "simulation")
    if group in ("simulator", "prior", "summary", "method"):
        assert instantiate_part(part_config(cfg, group)) is not None


@pytest.mark.parametrize("estimator", options("estimator"))
def test_every_estimator_fits_some_method(estimator):
    estimator_cfg = part_config(_compose([f"estimator={estimator}"]), "estimator")
    accepted, refused = [], []
    for method in options("method"):
        try:
            instantiate_part(part_config(_compose([f"method={method}"]), "method")).check_estimator(estimator_cfg)
            accepted.append(method)
        except ValueError as error:
            assert "estimator.model" in str(error)
            refused.append(method)
    assert accepted, f"no method trains estimator={estimator}"


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_preset_composes(experiment):
    cfg = _compose([f"experiment={experiment}"])
    check_config(cfg)
    OmegaConf.to_container(cfg.simulator, resolve=True)


@pytest.mark.parametrize(
    "override,key",
    [
        ("simulation.num_simulations=0", "simulation.num_simulations"),
        ("simulation.num_simulations=abc", "simulation.num_simulations"),
        ("trainer.learning_rate=-1", "trainer.learning_rate"),
        ("trainer.validation_fraction=1.5", "trainer.validation_fraction"),
        ("simulation.backend=ray", "simulation.backend"),
        ("diagnostics.num_test=0", "diagnostics.num_test"),
    ],
)
def test_bad_values_name_their_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        check_config(_compose([override]))


def test_threshold_keys_checked_early_are_the_gates():
    from dataclasses import fields

    from sbilab.diagnostics.gates import GateThresholds
    from sbilab.diagnostics.settings import THRESHOLD_KEYS

    assert set(THRESHOLD_KEYS) == {f.name for f in fields(GateThresholds)}
    with pytest.raises(ConfigError, match=r"diagnostics\.thresholds\.sbc_pvalue"):
        check_config(_compose(["+diagnostics.thresholds.sbc_pvalue=0.1"]))


def test_trainer_sbi_is_sbis_own_training_and_the_tutorial_preset_uses_it():
    sbi = _compose(["trainer=sbi"]).trainer
    assert sbi.lr_decay is None and sbi.weight_averaging is None
    assert (sbi.batch_size, sbi.learning_rate, sbi.validation_fraction, sbi.stop_after_epochs, sbi.clip_max_norm) == (
        200, 5e-4, 0.1, 20, 5.0)
    tutorial = _compose(["experiment=hh_tutorial"])
    assert tutorial.trainer.lr_decay is None and tutorial.estimator.model == "maf"


@pytest.mark.parametrize("group,option", sorted(GIVEN))
def test_a_value_left_to_the_user_is_named_when_missing(group, option):
    from sbilab.errors import ConfigError

    given = GIVEN[(group, option)]
    cfg = _compose([f"{group}={option}", *given[1:]])  # the first value left out
    key = given[0].lstrip("+").split("=")[0]
    with pytest.raises(ConfigError, match=rf"^{key} is not set: {group}={option} needs {key}"):
        check_config(cfg)
