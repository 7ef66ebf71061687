"""The typed diagnostics settings: every config file builds one, bad values name their key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from sbilab.diagnostics import DiagnosticsSeeds, DiagnosticsSettings, GateThresholds
from sbilab.errors import ConfigError

CONF = Path(__file__).resolve().parents[1] / "conf"


@pytest.mark.parametrize("name", ["default", "fast"])
def test_every_diagnostics_config_builds_settings(name):
    cfg = OmegaConf.load(CONF / "diagnostics" / f"{name}.yaml")
    cfg.pop("defaults", None)
    base = OmegaConf.load(CONF / "diagnostics" / "default.yaml")
    settings = DiagnosticsSettings.from_mapping(OmegaConf.merge(base, cfg))
    assert settings.num_test == cfg.get("num_test", base.num_test)
    assert settings.thresholds == GateThresholds(**OmegaConf.to_container(base.thresholds))


def test_experiment_overrides_are_valid_settings():
    base = OmegaConf.load(CONF / "diagnostics" / "default.yaml")
    for path in sorted((CONF / "experiment").glob("*.yaml")):
        override = OmegaConf.load(path).get("diagnostics")
        if override is not None:
            merged = OmegaConf.merge(base, override)
            settings = DiagnosticsSettings.from_mapping(merged)
            assert settings.thresholds.c2st_max == merged.thresholds.c2st_max, path.name


@pytest.mark.parametrize(
    "values,message",
    [
        ({"num_test": 0}, "diagnostics.num_test=0 is invalid: expected an integer >= 1"),
        ({"num_posterior_samples": "abc"}, "diagnostics.num_posterior_samples='abc' is invalid"),
        ({"enabled": "maybe"}, "diagnostics.enabled='maybe' is invalid: expected true or false"),
        ({"num_ppc": 20000}, "diagnostics.num_ppc=20000 is larger than the posterior samples"),
        ({"thresholds": {"sbc_pvalue": 0.1}},
         "diagnostics.thresholds.sbc_pvalue is not a setting of diagnostics.thresholds; allowed: sbc_ks_pvalue_min, "),
        ({"lc2st": {"num_trials_null": 0}}, "diagnostics.lc2st.num_trials_null=0 is invalid: expected an integer >= 1"),
        ({"thresholds": {"c2st_max": "high"}}, "diagnostics.thresholds.c2st_max='high' is invalid: expected a number"),
        ({"thresholds": 3}, "diagnostics.thresholds=3 is invalid"),
        ({"num_tests": 10}, "diagnostics.num_tests is not a setting of diagnostics; allowed: enabled, num_test"),
        ({"sampler_budget": {"seconds": 0}},
         "diagnostics.sampler_budget.seconds=0.0 is invalid: expected a number > 0"),
        ({"sampler_budget": {"test_points": 0}},
         "diagnostics.sampler_budget.test_points=0 is invalid: expected an integer >= 1, or null"),
    ],
)
def test_bad_values_raise_one_line_naming_the_key(values, message):
    with pytest.raises(ConfigError) as error:
        DiagnosticsSettings.from_mapping(values)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_missing_keys_keep_defaults_and_thresholds_may_switch_a_gate_off():
    settings = DiagnosticsSettings.from_mapping({"num_test": 50, "thresholds": {"c2st_max": None}})
    assert settings.num_test == 50 and settings.num_posterior_samples == 1000
    assert settings.thresholds.c2st_max is None and settings.thresholds.sbc_ks_pvalue_min == 0.01


def test_seeds_must_be_integers():
    with pytest.raises(TypeError, match="DiagnosticsSeeds.tarp"):
        DiagnosticsSeeds(sampling=1, c2st=1, tarp=1.5, observation_log_prob=1, observation_samples=1,
                         tarp_bootstrap=1, lc2st=1, misspecification=1)


def test_settings_import_stays_light():
    """The config checks read the settings before any heavy import: no torch, no sbi."""
    code = ("import sys; import sbilab.diagnostics.settings; "
            "print(sorted(m for m in ('torch', 'sbi', 'scipy', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
