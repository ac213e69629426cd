"""Build the two compiled extensions of kaiwo_core.

* ``kaiwo_core._core`` -- pybind11 module: the plain C++17 kernels in ``csrc/`` plus one
  ``bindings/register_<area>.cpp`` per area.
* ``kaiwo_core._quantity`` -- Cython module: Kubernetes quantity and annotation parsing.

Source lists are explicit and sorted so a new file is a deliberate change.

``KAIWO_SANITIZE=1`` builds both with AddressSanitizer and UndefinedBehaviorSanitizer (debug info,
frame pointers, -O1 for readable reports); ``tools/sanitize.sh`` does that in a temporary copy and
runs the kernel tests under it.
"""
import os

import numpy
from Cython.Build import cythonize
from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import Extension, setup

CORE_SOURCES = sorted([
    "bindings/module.cpp",
    "bindings/register_placement.cpp",
    "bindings/register_preempt.cpp",
    "bindings/register_queues.cpp",
    "bindings/register_rebalance.cpp",
    "csrc/fairshare.cpp",
    "csrc/ordering.cpp",
    "csrc/placement.cpp",
    "csrc/preempt.cpp",
    "csrc/rebalance.cpp",
])

SANITIZE = os.environ.get("KAIWO_SANITIZE", "") not in ("", "0")
SANITIZER_FLAGS = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g", "-O1"] if SANITIZE else []

core = Pybind11Extension(
    "kaiwo_core._core",
    CORE_SOURCES,
    include_dirs=["csrc"],
    cxx_std=17,
    # -ffp-contract=off: no fused multiply-add, so float scores match the Python reference bit for bit.
    extra_compile_args=["-O3", "-ffp-contract=off", *SANITIZER_FLAGS],
    extra_link_args=SANITIZER_FLAGS,
)

quantity = Extension(
    "kaiwo_core._quantity",
    ["kaiwo_core/_quantity.pyx"],
    include_dirs=[numpy.get_include()],
    extra_compile_args=["-O3", *SANITIZER_FLAGS],
    extra_link_args=SANITIZER_FLAGS,
)

setup(
    ext_modules=[core, *cythonize([quantity], language_level=3)],
    cmdclass={"build_ext": build_ext},
)
