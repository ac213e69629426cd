"""Compiling the Numba kernels ahead of need, and shipping them in an image.

The monitoring kernels (exposition parsing, the metrics store, alert evaluation, efficiency and
right-sizing) are Numba functions: compiled on first use, ~15 CPU-seconds in all, then kept in
Numba's on-disk cache (``NUMBA_CACHE_DIR``). A container starts with an empty cache, so every
restart would pay that again before it can serve. Two pieces avoid it:

* :func:`warm_up` runs every monitoring path once on the bundled example scrapes, so every kernel
  is compiled for the argument types it really gets (a kernel without an explicit signature compiles
  per type on first call, so importing is not enough). ``kaiwo warmup`` runs it; the image runs it at
  build time into a seed directory (``deploy/Dockerfile``).
* :func:`seed_cache` copies that seed (``$KAIWO_NUMBA_CACHE_SEED``) into ``NUMBA_CACHE_DIR`` before
  any kernel is loaded. Numba only uses a cache directory it can write to, and the Deployment's root
  file system is read-only, so the seed cannot be used in place: it is copied into the writable
  ``/tmp`` emptyDir.

Numba's cache entries are keyed by source file (path, size, mtime) and by the CPU the code was
compiled for, so a seed only hits in the same image and, unless ``NUMBA_CPU_NAME=generic`` is set
at build and run time (the image does), on the same CPU model. A miss is never wrong, only slow:
the kernel compiles again, and the controller reports ready only after :func:`warm_up` (see
``Controller.readyz``).
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time

#: Environment variable naming the shipped, pre-compiled cache to copy into NUMBA_CACHE_DIR.
SEED_ENV = "KAIWO_NUMBA_CACHE_SEED"

#: The modules that hold Numba kernels (all of them are monitoring).
KERNEL_MODULES = ("kaiwo_core.monitoring.exposition", "kaiwo_core.monitoring.metrics_kernels", "kaiwo_core.monitoring.metrics_store",
                  "kaiwo_core.monitoring.alerts", "kaiwo_core.monitoring.efficiency", "kaiwo_core.monitoring.rightsizing", "kaiwo_core.monitoring.history")


def seed_cache(seed: str | None = None, target: str | None = None) -> int:
    """Copy a pre-compiled Numba cache into ``NUMBA_CACHE_DIR``; returns the files copied.

    Nothing is copied when no seed is configured or it does not exist, when no target is set, or
    over files the target already has (a restarted container keeps its emptyDir). Must run before
    the first Numba kernel is loaded: Numba reads its index files when a kernel is first used.
    """
    seed = seed if seed is not None else os.environ.get(SEED_ENV)
    target = target if target is not None else os.environ.get("NUMBA_CACHE_DIR")
    if not seed or not target or not os.path.isdir(seed) or os.path.realpath(seed) == os.path.realpath(target):
        return 0
    copied = 0
    for root, _dirs, names in os.walk(seed):
        dest = os.path.join(target, os.path.relpath(root, seed))
        os.makedirs(dest, exist_ok=True)
        for name in names:
            out = os.path.join(dest, name)
            if not os.path.exists(out):
                shutil.copy2(os.path.join(root, name), out)
                copied += 1
    return copied


def cache_stats() -> dict:
    """Numba's cache hits and misses (compilations) so far over the kernels of :data:`KERNEL_MODULES`
    that are imported: ``{"kernels": n, "hits": n, "misses": n}``."""
    import sys

    from numba.core.registry import CPUDispatcher

    kernels = {id(v): v for m in KERNEL_MODULES if m in sys.modules
               for v in vars(sys.modules[m]).values() if isinstance(v, CPUDispatcher)}
    stats = [k.stats for k in kernels.values()]
    return {"kernels": len(kernels), "hits": sum(sum(s.cache_hits.values()) for s in stats),
            "misses": sum(sum(s.cache_misses.values()) for s in stats)}


def warm_up() -> dict:
    """Run every monitoring path once on the bundled example, compiling (or loading) its kernels.

    Returns ``{step: seconds}`` for ingestion, alert evaluation, the efficiency report, right-sizing
    and the history file round trip. Prints nothing; raises only if the bundled data is unreadable.
    """
    from kaiwo_core.monitoring.alerts import load_rules
    from kaiwo_core.monitoring.efficiency import Allocations, efficiency_report
    from kaiwo_core.monitoring.history import load, save
    from kaiwo_core.monitoring.rightsizing import Rightsizer


    from .cli.monitor import EXAMPLE_RULES, data_path, load_source, replay_alerts

    steps: dict = {}

    def timed(name, fn, *args):
        t0 = time.perf_counter()
        out = fn(*args)
        steps[name] = time.perf_counter() - t0
        return out

    store, _, _ = timed("ingest", load_source, None)
    rules = load_rules(data_path(EXAMPLE_RULES))
    timed("alerts", replay_alerts, store, rules)
    window = 3600.0
    alloc = timed("allocations", Allocations.from_store, store, window)
    timed("efficiency", efficiency_report, store, alloc, window)
    timed("rightsizing", Rightsizer().recommend, store, alloc, window)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "history.npz")
        timed("history", lambda: load(save(store, path)))
    return steps
