"""Every method × a representative estimator, end to end with diagnostics on, the methods split between two
simulators (a bounded and an unbounded prior) so that both are covered (every experiment preset:
tests/test_presets.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient

from docs_harness import TINY_TSNPE

CONF = Path(__file__).resolve().parents[1] / "conf"
METHODS = {
    "npe": "maf",
    "snpe": "maf",
    "tsnpe": "maf",
    "nle": "maf",
    "nre": "classifier_mlp",
    "nre_c": "classifier_resnet",
    "fmpe": "vf_mlp",
    "npse": "vf_mlp",
}
AMORTISED = ("npe", "snpe", "tsnpe", "fmpe", "npse")
#: shrunk per method as the docs' tiny runs shrink it: fewer MCMC chains and warm-up sweeps (gaussian_linear's preset
#: runs 500 chains), TSNPE's rounds and the draws that place each region (docs_harness.TINY_TSNPE)
MCMC_TINY = ["method.sampling.mcmc.num_chains=50", "method.sampling.mcmc.warmup_steps=20"]
METHOD_TINY = {"nle": MCMC_TINY, "nre": MCMC_TINY, "nre_c": MCMC_TINY, "tsnpe": TINY_TSNPE.split()}
#: shrunk budgets, no stage off: the test set is sampled (per x for MCMC/rejection/VI/importance), gated, recorded
TINY = ["simulation.num_simulations=300", "trainer=fast", "diagnostics=fast", "diagnostics.num_test=30",
        "diagnostics.num_posterior_samples=30", "diagnostics.num_observation_samples=200", "diagnostics.num_ppc=10",
        "diagnostics.sampler_budget.seconds=3", "diagnostics.sampler_budget.min_test_points=10",
        "diagnostics.lc2st.num_trials_null=5", "diagnostics.predictive_distance.num_prior=100"]


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


#: each method on one simulator, alternating: each simulator meets amortised and per-x sampled methods
METHOD_CASES = [(method, ("two_moons", "gaussian_linear")[k % 2]) for k, method in enumerate(sorted(METHODS))]


@pytest.mark.slow
@pytest.mark.parametrize(("method", "simulator"), METHOD_CASES, ids=[f"{m}-{s}" for m, s in METHOD_CASES])
def test_method_runs_end_to_end(store, tmp_path, simulator, method):
    from sbilab.pipeline import run
    from sbilab.spec import prepare

    # one network: the gaussian_linear preset's ensemble is NPE's (snpe refuses one; MCMC methods would sample 10)
    cfg = _compose([f"experiment={simulator}", f"method={method}", f"estimator={METHODS[method]}", *TINY,
                    *METHOD_TINY.get(method, []),
                    "trainer.ensemble_size=1", *store["overrides"], f"paths.cache_dir={tmp_path}/cache",
                    f"paths.output_dir={tmp_path}/out",
                    f"tracking.experiment={simulator}"])
    result = run(prepare(cfg))
    run_record = MlflowClient(store["uri"]).get_run(result.run_id)
    assert run_record.info.status == "FINISHED"
    assert run_record.data.tags["sbilab.method"] == method
    assert "val/loss_best" in run_record.data.metrics
    assert run_record.data.tags["sbilab.gates"] in ("pass", "fail")
    metrics = run_record.data.metrics
    if method in AMORTISED:  # batched: every test point (less those a leaking flow could not sample)
        assert metrics["diagnostics/num_test_points"] + metrics["diagnostics/dropped_test_points"] == 30
        assert "diagnostics/sampler_seconds_per_point" not in metrics
    else:  # a per-x sampler: what its 3 s allow, at least the timed pilot's 2
        assert metrics["diagnostics/num_test_points"] >= 2 and metrics["diagnostics/samples_per_point"] == 30


#: every sampler a potential-based method can use, and an ensemble of NLE networks (sampled as their mixture)
SAMPLERS = {
    # sbi's serial slice sampler takes seconds per x: a short warm-up keeps the test short
    "mcmc_slice_np": ["method.sample_with=mcmc", "method.sampling.mcmc.method=slice_np",
                      "method.sampling.mcmc.warmup_steps=10", "method.sampling.mcmc.num_chains=2"],
    "mcmc_slice_np_vectorized": ["method.sample_with=mcmc", "method.sampling.mcmc.method=slice_np_vectorized"],
    "mcmc_slice_vectorized": ["method.sample_with=mcmc", "method.sampling.mcmc.method=slice_vectorized"],
    "rejection": ["method.sample_with=rejection"],
    "importance": ["method.sample_with=importance"],
    "vi": ["method.sample_with=vi", "method.sampling.vi.train.max_num_iters=20"],
    "ensemble_mcmc": ["method.sample_with=mcmc", "trainer.ensemble_size=2"],
}


@pytest.mark.slow
@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_every_sampler_runs_the_diagnostics(store, tmp_path, sampler):
    from sbilab.pipeline import run
    from sbilab.spec import prepare

    cfg = _compose(["experiment=two_moons", "method=nle", "estimator=maf", *TINY,
                    *SAMPLERS[sampler], *store["overrides"], f"paths.cache_dir={tmp_path}/cache",
                    f"paths.output_dir={tmp_path}/out"])
    result = run(prepare(cfg))
    run_record = MlflowClient(store["uri"]).get_run(result.run_id)
    assert run_record.info.status == "FINISHED"
    assert run_record.data.tags["sbilab.gates"] in ("pass", "fail")
    metrics = run_record.data.metrics
    # the time bound wins over min_test_points: a slow sampler gets fewer points, at least the timed pilot's
    assert metrics["diagnostics/num_test_points"] >= 2 and metrics["diagnostics/samples_per_point"] == 30
    budget, per_point = 3.0, metrics["diagnostics/sampler_seconds_per_point"]
    assert metrics["diagnostics/num_test_points"] <= max(2, budget / per_point) + 1e-9
