"""Check sbilab.tasks (sbibm tasks written as plain functions) against sbibm 1.1.0's published observations.

    python scripts/check_sbibm_tasks.py [--tasks TASK ...] [--observations 1 2 ...] [--wheel PATH]
                                        [--num-sims N] [--c2st-samples N] [--proposals N] [--no-c2st]

Per task and sbibm observation k (true θ*_k, published x_o,k and 10,000 reference posterior samples):

- ``ll pct``: the exact log-likelihood of x_o,k under θ*_k (our implementation), as a percentile among
  the log-likelihoods of ``--num-sims`` x simulated at θ*_k by our simulator (mid-rank for ties). If our
  simulator is sbibm's, x_o,k is one more draw: the ten percentiles look uniform (the KS p-value under
  the task summarises it). bernoulli_glm's summaries Xᵀy are sufficient and, for sbibm's continuous
  stimulus, one-to-one with the spike train y, so their log-likelihood is the spike train's.
  slcp_distractors: SLCP's 8 numbers only (the distractors' density is numerically out of reach).
- ``max|z|``: the largest |x_o - mean| / sd over x's entries (sd > 0), from the same simulations
  (slcp_distractors: SLCP's 8 entries; ``distr pct``: mean percentile of the 92 distractors among
  simulated ones, each entry's marginal). For bernoulli_glm_raw's 0/1 bins it is large by nature (a
  spike where p = 0.01 is |z| ≈ 10): read ``ll pct`` there.
- ``c2st``: samples of the exact posterior at x_o,k against sbibm's reference samples (sbilab's c2st,
  sbi's MLP classifier, ``--c2st-samples`` per side; 0.5 = indistinguishable). gaussian_linear_uniform:
  the truncated Gaussian sampled directly. The others: rejection sampling from a Gaussian mixture fitted
  to the reference samples and widened, accepting by prior × our likelihood / proposal (exact up to the
  largest weight seen in ``--proposals`` draws); ``acc`` is the number accepted. The reference samples
  only shape the proposal; a likelihood unlike sbibm's moves the accepted samples away from them.

Exact checks follow the table: sbibm's files against what sbilab ships or recomputes (``--wheel``: a local
copy of the sbibm 1.1.0 wheel for the comparisons with its data files; the cache is fetched from it too),
and the ODE integrators against scipy's DOP853 at rtol 1e-12.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
import zipfile
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from sbilab import entry  # noqa: F401  (sets PROJECT_ROOT)

TASKS = ("gaussian_linear_uniform", "bernoulli_glm", "bernoulli_glm_raw", "sir", "lotka_volterra", "slcp_distractors")


# ---------------------------------------------------------------------------------------------
# the tasks: simulator, exact log-likelihood, prior log-density on the sampling space


@dataclass
class Task:
    name: str
    simulate: Callable[[np.ndarray, np.random.Generator], np.ndarray]
    #: log p(x | θ) per row, or None
    log_likelihood: Optional[Callable[[np.ndarray, np.ndarray], np.ndarray]]
    #: θ -> the space the posterior is sampled in (log for positive parameters), and back
    to_space: Callable[[np.ndarray], np.ndarray] = field(default=lambda t: t)
    from_space: Callable[[np.ndarray], np.ndarray] = field(default=lambda u: u)
    #: log prior density in that space (up to a constant), -inf outside the support
    log_prior: Optional[Callable[[np.ndarray], np.ndarray]] = None
    #: mixture components of the proposal, and its standard deviations relative to the fit's
    components: int = 1
    widen: float = 1.5
    #: which entries of x the likelihood and the z-scores look at (None: all)
    entries: Optional[np.ndarray] = None


def _normal_log_prior(loc: np.ndarray, scale: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    return lambda u: (-0.5 * ((u - loc) / scale) ** 2).sum(-1)


def build_tasks() -> dict[str, Task]:
    from sbilab.tasks import bernoulli_glm, gaussian_linear_uniform, lotka_volterra, sir, slcp_distractors

    precision = bernoulli_glm.prior_precision()
    glm_prior = lambda t: -0.5 * np.einsum("ni,ij,nj->n", t, precision, t)  # noqa: E731

    def glm_summary_loglik(theta: np.ndarray, summary: np.ndarray) -> np.ndarray:
        # log p(s | θ) = θ·s - Σ log(1 + e^ψ) when s = Xᵀy has one y (sbibm's continuous stimulus)
        psi = np.asarray(theta) @ bernoulli_glm.design_matrix().T
        return (np.asarray(summary) * np.asarray(theta)).sum(-1) - np.logaddexp(0.0, psi).sum(-1)

    def box(bound: float) -> Callable[[np.ndarray], np.ndarray]:
        return lambda t: np.where((np.abs(t) <= bound).all(-1), 0.0, -np.inf)

    slcp_entries = slcp_distractors.slcp_positions()
    return {
        "gaussian_linear_uniform": Task("gaussian_linear_uniform", gaussian_linear_uniform.simulate,
                                        gaussian_linear_uniform.log_likelihood, log_prior=box(1.0)),
        "bernoulli_glm": Task("bernoulli_glm", bernoulli_glm.simulate, glm_summary_loglik, log_prior=glm_prior,
                              widen=1.25),
        "bernoulli_glm_raw": Task("bernoulli_glm_raw", bernoulli_glm.simulate_raw, bernoulli_glm.log_likelihood_raw,
                                  log_prior=glm_prior, widen=1.25),
        "sir": Task("sir", sir.simulate, sir.log_likelihood, np.log, np.exp,
                    _normal_log_prior(np.log([0.4, 0.125]), np.array([0.5, 0.2]))),
        "lotka_volterra": Task("lotka_volterra", lotka_volterra.simulate, lotka_volterra.log_likelihood, np.log, np.exp,
                               _normal_log_prior(np.array([-0.125, -3.0, -0.125, -3.0]), np.full(4, 0.5))),
        "slcp_distractors": Task("slcp_distractors", slcp_distractors.simulate,
                                 lambda t, x: slcp_distractors.slcp_log_likelihood(t, x), log_prior=box(3.0),
                                 components=16, entries=slcp_entries),
    }


# ---------------------------------------------------------------------------------------------
# (a) where sbibm's x_o falls among our simulations at θ*


def percentile(value: float, sample: np.ndarray) -> float:
    return float((sample < value).mean() + 0.5 * (sample == value).mean())


def likelihood_check(task: Task, theta: np.ndarray, x_o: np.ndarray, num: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    sims = task.simulate(np.repeat(theta[None], num, axis=0), rng)
    sims = sims[np.isfinite(sims).all(axis=1)]
    out: dict[str, float] = {}
    part_sims = sims if task.entries is None else sims[:, task.entries]
    part_o = x_o if task.entries is None else x_o[task.entries]
    if task.log_likelihood is not None:
        ll_o = float(task.log_likelihood(theta[None], part_o[None])[0])
        ll_sims = task.log_likelihood(np.repeat(theta[None], len(sims), axis=0), part_sims)
        out["ll_pct"] = percentile(ll_o, ll_sims)
    sd = part_sims.std(axis=0)
    z = np.abs(part_o - part_sims.mean(axis=0))[sd > 0] / sd[sd > 0]
    out["max_z"] = float(z.max()) if z.size else float("nan")
    if task.entries is not None:  # slcp_distractors: the 92 distractors' marginal percentiles
        others = np.setdiff1d(np.arange(sims.shape[1]), task.entries)
        out["distr_pct"] = float(np.mean([percentile(x_o[j], sims[:, j]) for j in others]))
    return out


# ---------------------------------------------------------------------------------------------
# (b) exact posterior samples at x_o against sbibm's reference samples


def posterior_by_rejection(task: Task, x_o: np.ndarray, reference: np.ndarray, num_proposals: int,
                           seed: int) -> tuple[np.ndarray, int]:
    """Rejection sampling from a widened Gaussian mixture fitted to the reference; (accepted θ, count)."""
    from scipy.special import logsumexp
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(seed)
    space = task.to_space(reference)
    mixture = GaussianMixture(task.components, covariance_type="full", random_state=seed, reg_covar=1e-6).fit(space)
    covariances = mixture.covariances_ * task.widen**2  # wider than the target in every direction
    counts = rng.multinomial(num_proposals, mixture.weights_)
    draws = np.concatenate([rng.multivariate_normal(m, c, size=n)
                            for m, c, n in zip(mixture.means_, covariances, counts)])
    from scipy.stats import multivariate_normal

    log_q = logsumexp(np.stack([np.log(w) + multivariate_normal(m, c).logpdf(draws)
                                for w, m, c in zip(mixture.weights_, mixture.means_, covariances)]), axis=0)
    theta = task.from_space(draws)
    log_prior = task.log_prior(draws)
    inside = np.isfinite(log_prior)
    log_w = np.full(len(draws), -np.inf)
    x = x_o if task.entries is None else x_o[task.entries]
    loglik = task.log_likelihood(theta[inside], x[None])
    log_w[inside] = log_prior[inside] + loglik - log_q[inside]
    accept = np.log(rng.random(len(draws))) < log_w - np.nanmax(log_w[np.isfinite(log_w)])
    return theta[accept], int(accept.sum())


def posterior_check(task: Task, x_o: np.ndarray, reference: np.ndarray, args: argparse.Namespace,
                    seed: int) -> dict[str, float]:
    from threadpoolctl import threadpool_limits

    from sbilab.diagnostics.c2st import c2st_score
    from sbilab.tasks import gaussian_linear_uniform

    if task.name == "gaussian_linear_uniform":
        ours = gaussian_linear_uniform.posterior_sample(x_o, len(reference), np.random.default_rng(seed))
        accepted = len(ours)
    else:
        ours, accepted = posterior_by_rejection(task, x_o, reference, args.proposals, seed)
    if accepted < 50:
        return {"c2st": float("nan"), "acc": accepted}
    with threadpool_limits(limits=1):
        score = c2st_score(ours, reference, seed=seed, max_samples=args.c2st_samples)
    return {"c2st": score, "acc": accepted}


# ---------------------------------------------------------------------------------------------
# (c) exact checks


def wheel_tensor(wheel: Optional[str], member: str, stubs: tuple = ()) -> Any:
    import torch

    with zipfile.ZipFile(wheel) as archive:
        data = archive.read(f"sbibm/tasks/{member}")
    with torch.serialization.safe_globals(list(stubs)):
        return torch.load(io.BytesIO(data), weights_only=True)


def pyro_stubs() -> tuple:
    """Stand-ins for the pyro classes pickled in sbibm's gmm.torch (their attributes are all we read)."""
    def stub(module: str, name: str) -> type:
        cls = type(name, (), {})
        cls.__module__, cls.__qualname__ = module, name
        return cls

    return (stub("pyro.distributions.multivariate_studentt", "MultivariateStudentT"),
            *(stub("pyro.distributions.torch", n) for n in ("Categorical", "Chi2", "Independent", "MixtureSameFamily")))


def exact_checks(tasks: list[str], observations: list[int], wheel: Optional[str]) -> list[tuple[str, str, str]]:
    """(task, what, result) rows."""
    from scipy.integrate import solve_ivp

    from sbilab.simulators import sbibm_reference as ref
    from sbilab.tasks import bernoulli_glm, lotka_volterra, sir, slcp_distractors

    rows: list[tuple[str, str, str]] = []
    if "bernoulli_glm" in tasks or "bernoulli_glm_raw" in tasks:
        worst = max(np.abs(bernoulli_glm.summarise(ref.published_observation("bernoulli_glm_raw", k).x[None])[0]
                           - ref.published_observation("bernoulli_glm", k).x).max() for k in observations)
        rows.append(("bernoulli_glm", "summarise(sbibm's raw x_o) - sbibm's x_o, max |diff| over obs",
                     f"{worst:.1e} (float32 rounding)"))
        stim, design = bernoulli_glm.stimulus(), bernoulli_glm.design_matrix()
        rebuilt = np.ones((100, 10))
        for j in range(9):  # sbibm's _setup: X[j:, 1 + j] = I[: 100 - j]
            rebuilt[:, 1 + j] = np.concatenate([np.zeros(j), stim[: 100 - j]])
        rows.append(("bernoulli_glm", "design matrix = [1, stimulus delayed 0..8] (sbibm's _setup)",
                     str(bool(np.array_equal(rebuilt, design)))))
        from omegaconf import OmegaConf

        conf = OmegaConf.load(entry.ROOT / "conf" / "prior" / "bernoulli_glm.yaml")
        gap = np.abs(np.array(OmegaConf.to_container(conf.precision)) - bernoulli_glm.prior_precision()).max()
        rows.append(("bernoulli_glm", "conf/prior precision - sbibm's formula, max |diff|", f"{gap:.1e}"))
        if wheel:
            files = "bernoulli_glm/files/"
            same = (np.array_equal(wheel_tensor(wheel, files + "design_matrix.pt").numpy(), design.astype(np.float32))
                    and np.array_equal(wheel_tensor(wheel, files + "stimulus_I.pt").numpy(), stim.astype(np.float32)))
            rows.append(("bernoulli_glm", "shipped design matrix, stimulus = the wheel's .pt files", str(bool(same))))
    if "slcp_distractors" in tasks:
        same = all(np.array_equal(ref.published_observation("slcp_distractors", k).x[slcp_distractors.slcp_positions()],
                                  ref.published_observation("slcp", k).x) for k in observations)
        rows.append(("slcp_distractors", "SLCP entries of sbibm's x_o = sbibm's slcp x_o (all obs)", str(same)))
        same = all(np.array_equal(ref.published_observation("slcp_distractors", k).samples,
                                  ref.published_observation("slcp", k).samples) for k in observations)
        rows.append(("slcp_distractors", "sbibm's reference samples = slcp's", str(same)))
        gmm = slcp_distractors.mixture()
        rng = np.random.RandomState(42)  # sbibm's SLCP._generate_noise_dist_parameters
        loc = np.array([15 * rng.normal(size=92) for _ in range(20)])
        tril = 3 * np.array([np.tril(rng.normal(size=(92, 92))) + np.diag(np.exp(rng.normal(size=92)))
                             for _ in range(20)])
        permutation = rng.permutation(100)
        gap = max(np.abs(loc - gmm["loc"]).max(), np.abs(tril - gmm["scale_tril"]).max())
        rows.append(("slcp_distractors", "shipped mixture - sbibm's generator (seed 42), max |diff|",
                     f"{gap:.1e}; permutation equal: {bool(np.array_equal(permutation, gmm['permutation']))}"))
        if wheel:
            pickled = wheel_tensor(wheel, "slcp/files/gmm.torch", pyro_stubs())
            base = pickled._component_distribution.base_dist
            same = (np.array_equal(base.loc.numpy(), gmm["loc"])
                    and np.array_equal(base._unbroadcasted_scale_tril.numpy(), gmm["scale_tril"])
                    and np.array_equal(base.df.numpy(), gmm["df"])
                    and np.array_equal(pickled._mixture_distribution.probs.numpy(), gmm["mixture_probs"])
                    and np.array_equal(wheel_tensor(wheel, "slcp/files/permutation_idx.torch").numpy(),
                                       gmm["permutation"]))
            rows.append(("slcp_distractors", "shipped mixture, permutation = the wheel's gmm.torch, "
                         "permutation_idx.torch", str(bool(same))))
    rng = np.random.default_rng(0)
    if "sir" in tasks:
        theta = np.vstack([np.exp(rng.normal(np.log([0.4, 0.125]), [0.5, 0.2], size=(200, 2))),
                           *[ref.published_observation("sir", k).theta[None] for k in observations]])
        exact = np.array([solve_ivp(lambda t, u, b=b, g=g: [-b * u[0] * u[1], b * u[0] * u[1] - g * u[1]],
                                    (0, 160), [1 - 1e-6, 1e-6], method="DOP853", rtol=1e-12, atol=1e-16,
                                    t_eval=sir.OBSERVED_DAYS).y[1] for b, g in theta])
        gap = np.abs(sir.infected_fraction(theta) - exact).max() * sir.TOTAL_COUNT
        rows.append(("sir", f"RK4 (dt = 1/{sir.STEPS_PER_DAY} day) vs DOP853, 200 prior draws + θ*: max |Δ E[x]|",
                     f"{gap:.1e} counts"))
    if "lotka_volterra" in tasks:
        theta = np.vstack([np.exp(rng.normal([-0.125, -3.0, -0.125, -3.0], 0.5, size=(200, 4))),
                           *[ref.published_observation("lotka_volterra", k).theta[None] for k in observations]])
        exact = []
        for a, b, g, d in theta:
            solution = solve_ivp(lambda t, u, a=a, b=b, g=g, d=d: [a - b * np.exp(u[1]), d * np.exp(u[0]) - g],
                                 (0, 19.0), np.log(lotka_volterra.INITIAL), method="DOP853", rtol=1e-12, atol=1e-12,
                                 t_eval=lotka_volterra.OBSERVED_TIMES)
            exact.append(solution.y.reshape(-1))
        gap = np.abs(lotka_volterra.log_populations(theta) - np.array(exact)).max()
        rows.append(("lotka_volterra", f"RK4 on log u (dt = {lotka_volterra.SAVE_EVERY / lotka_volterra.SUBSTEPS:g}) "
                     "vs DOP853, 200 prior draws + θ*: max |Δ log u|", f"{gap:.1e} (noise sd 0.1)"))
    return rows


# ---------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS, metavar="TASK")
    parser.add_argument("--observations", nargs="+", type=int, default=list(range(1, 11)))
    parser.add_argument("--wheel", help="local copy of sbibm-1.1.0-py2.py3-none-any.whl (else the cache is downloaded)")
    parser.add_argument("--num-sims", type=int, default=5000, help="simulations at θ* per observation")
    parser.add_argument("--c2st-samples", type=int, default=2000, help="posterior samples per side in the C2ST")
    parser.add_argument("--proposals", type=int, default=50_000, help="proposals per observation (rejection)")
    parser.add_argument("--no-c2st", action="store_true", help="skip the posterior C2ST (the slow part)")
    args = parser.parse_args()

    import torch
    from scipy.stats import kstest

    from sbilab.simulators import sbibm_reference as ref

    torch.set_num_threads(1)
    try:
        ref.fetch(wheel=args.wheel)
    except ref.SbibmDataUnavailable as error:
        entry.fail(str(error))
    tasks = build_tasks()
    started = time.perf_counter()
    print(f"sbilab.tasks vs sbibm {ref.SBIBM_VERSION}: {args.num_sims} simulations at θ* per observation; "
          f"c2st: {'off' if args.no_c2st else f'{args.c2st_samples} samples per side'}")
    header = f"{'task':24s} {'obs':>3s} {'ll pct':>6s} {'max|z|':>6s} {'distr pct':>9s} {'c2st':>6s} {'acc':>6s}"
    print(header)
    print("-" * len(header))
    summaries = []
    for name in args.tasks:
        task, pcts, scores = tasks[name], [], []
        task_started = time.perf_counter()
        for k in args.observations:
            published = ref.published_observation(name, k)
            row = likelihood_check(task, published.theta, published.x, args.num_sims, seed=k)
            if not args.no_c2st:
                row.update(posterior_check(task, published.x, published.samples, args, seed=k))
            pcts.append(row.get("ll_pct", np.nan))
            scores.append(row.get("c2st", np.nan))

            def cell(key: str, width: int, fmt: str, row: dict = row) -> str:
                value = row.get(key)
                return f"{'-':>{width}s}" if value is None else f"{value:{width}{fmt}}"

            print(f"{name:24s} {k:3d} {cell('ll_pct', 6, '.3f')} {cell('max_z', 6, '.2f')} "
                  f"{cell('distr_pct', 9, '.3f')} {cell('c2st', 6, '.3f')} {cell('acc', 6, 'd')}", flush=True)
        ks = kstest(np.array(pcts), "uniform").pvalue if len(pcts) > 1 else float("nan")
        mean_c2st = float(np.nanmean(scores)) if not args.no_c2st else float("nan")
        summaries.append((name, ks, mean_c2st, time.perf_counter() - task_started))
        print(f"{name:24s} ll pct uniform? KS p = {ks:.2f}; mean c2st = {mean_c2st:.3f} "
              f"({time.perf_counter() - task_started:.0f} s)")
        print("-" * len(header), flush=True)

    print("\nexact checks")
    for task_name, what, result in exact_checks(args.tasks, args.observations, args.wheel):
        print(f"  {task_name:17s} {what}: {result}")
    print(f"\n{time.perf_counter() - started:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
