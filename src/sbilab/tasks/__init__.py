"""sbibm benchmark tasks written the way a user brings a model: a plain function plus configs.

Each module here defines ``simulate(theta, rng) -> x`` (batched: θ [B, D] float64, a seeded
``numpy.random.Generator``) and nothing else that sbilab needs: no Simulator subclass. The run
reaches it through :class:`~sbilab.simulators.function.FunctionSimulator` and three configs per
task, as any user's model does:

- ``conf/simulator/<task>.yaml`` extends ``function`` and names ``fn: sbilab.tasks.<module>:simulate``;
- ``conf/prior/<task>.yaml`` builds sbibm's prior with :mod:`sbilab.priors`;
- ``conf/experiment/<task>.yaml`` composes them with summary=identity and the ``benchmark:`` block
  (``make benchmark TASKS=<task>`` scores sbibm's published observations 1-10).

The definitions follow sbibm 1.1.0 (Lueckmann et al. 2021, MIT licence), reimplemented in NumPy
(sbibm itself is never imported): gaussian_linear_uniform, bernoulli_glm and bernoulli_glm_raw,
sir, lotka_volterra, slcp_distractors. sbibm's own numbers that are not formulas (the GLM's
stimulus and design matrix, the distractors' mixture and permutation) are shipped in ``data/``.
Besides ``simulate``, each module has the exact log-likelihood or the parts of the model that
``scripts/check_sbibm_tasks.py`` uses to check it against sbibm's published observations.
"""
