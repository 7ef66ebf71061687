"""Declares the compiled Hodgkin-Huxley kernel; everything else is in pyproject.toml.

Flags, chosen by measurement (features, 1 core, CPU time, 2-core AMD EPYC with AVX-512):
-O3 -ffast-math -fopenmp-simd let gcc vectorise the per-lane loops over simulations
and call glibc's libmvec for exp/log/cos; -march=native then uses AVX-512.

    -march=native -ffast-math (512-bit vectors)   ~7,000 sims/s
    -march=native, no -ffast-math (scalar exp)    ~1,100 sims/s
    -march=x86-64-v3 -ffast-math (AVX2)           ~2,900 sims/s
    x86-64 baseline -ffast-math (SSE2)            ~1,800 sims/s

-mprefer-vector-width=512 pins the vector width gcc 12 already picks here.
Set SBILAB_PORTABLE=1 to build without -march=native (for a wheel shipped to other
machines; slower)."""

import os
import platform

from setuptools import Extension, setup

_FLAGS = ["-O3", "-ffast-math", "-fopenmp-simd", "-std=c11"]
if os.environ.get("SBILAB_PORTABLE", "0") != "1":
    _FLAGS.append("-march=native")
    if platform.machine().lower() in ("x86_64", "amd64"):
        _FLAGS.append("-mprefer-vector-width=512")  # used only where the CPU has AVX-512

setup(
    ext_modules=[
        Extension(
            "sbilab.simulators._hh_kernel",
            sources=["src/sbilab/simulators/_hh_kernel.c"],
            extra_compile_args=_FLAGS,
            libraries=["m"],
        )
    ]
)
