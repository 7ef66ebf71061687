"""Four SBI-benchmark tasks of sbibm (Lueckmann et al. 2021) with reference posteriors.

=================  ====  ====  ==============================================
task               dim θ dim x reference posterior
=================  ====  ====  ==============================================
two_moons            2     2   exact: simulator noise pushed through the
                               inverse map, rejected outside the prior box
gaussian_linear     10    10   analytic Gaussian
slcp                 5     8   tempered SMC on the exact Gaussian likelihood
gaussian_mixture     2     2   exact: mixture of box-truncated Gaussians
=================  ====  ====  ==============================================

One module per task; :mod:`.base` holds what they share (per-row randomness,
priors, the task base class and the tempered-SMC reference sampler).
"""

from __future__ import annotations

from sbilab.simulators.benchmark_tasks.base import BenchmarkTask
from sbilab.simulators.benchmark_tasks.gaussian_linear import GaussianLinear
from sbilab.simulators.benchmark_tasks.gaussian_mixture import GaussianMixture
from sbilab.simulators.benchmark_tasks.slcp import SLCP
from sbilab.simulators.benchmark_tasks.two_moons import TwoMoons

#: the tasks by sbibm name
TASKS: dict[str, type[BenchmarkTask]] = {
    cls.name: cls for cls in (TwoMoons, GaussianLinear, SLCP, GaussianMixture)
}
