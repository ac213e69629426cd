"""Evaluation: every policy on every openb trace variant and seed, next to FGD's published numbers.

Replays the FGD paper's experiment (see kaiwo_core/model/trace.py and kaiwo/simulator/offline.py) for the 17
trace variants the paper evaluates, the seven policies (the paper's six and Kaiwo's ``frag``) and
seeds 42-51, and prints the mean GPU allocation ratio at 130% arrival per policy and variant, the
paper's published FGD mean beside Kaiwo's, Kaiwo's median, and whether Kaiwo is at or above FGD.

The data is the repository's ``data/openb`` folder by default (gzipped copies of the trace; see
``data/README.md``): the variants' pod lists, the GPU node list and the paper's
``summary_alloc_mean_by_policy.csv``. ``--data`` may name a folder of plain or gzipped copies.
This script is not a test dependency (tests use only the trace bundled in the package)::

    python asv_bench/eval_openb.py                       # full table: 17 x 7 x 10 runs, 2 processes
    python asv_bench/eval_openb.py --variants default --policies fgd,frag --json out.json
"""
from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS = ("default", "cpu050", "cpu100", "cpu200", "cpu250", "gpushare100", "gpushare40", "gpushare60",
            "gpushare80", "gpuspec10", "gpuspec20", "gpuspec25", "gpuspec33", "multigpu20", "multigpu30",
            "multigpu40", "multigpu50")
_SCENARIOS: dict = {}


def data_file(data: str, name: str) -> Path | None:
    """``name`` (a ``.csv``) in the folder ``data``, plain or gzipped; None if neither is there."""
    for candidate in (Path(data) / name, Path(data) / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _scenario(data: str, variant: str):
    from kaiwo.simulator.offline import Scenario
    from kaiwo_core.model.trace import read_node_csv, read_pod_csv
    if variant not in _SCENARIOS:
        _SCENARIOS[variant] = Scenario(read_pod_csv(data_file(data, f"openb_pod_list_{variant}.csv")),
                                       read_node_csv(data_file(data, "openb_node_list_gpu_node.csv")), variant)
    return _SCENARIOS[variant]


def _run(task):
    from kaiwo.simulator.offline import replay
    data, variant, policy, seed = task
    r = replay(_scenario(data, variant), policy, seed, parts=1)
    return variant, policy, seed, r.at(100), r.at(130), r.wall


def published(data: str) -> dict:
    """{(variant, paper policy name): (mean at 100, mean at 130)} from the paper's summary file."""
    out = {}
    path = data_file(data, "summary_alloc_mean_by_policy.csv")
    if path is not None:
        with (gzip.open(path, "rt", newline="") if path.suffix == ".gz" else open(path, newline="")) as f:
            rows = list(csv.DictReader(f))
        for row in rows:
            out[(row["workload"].replace("openb_pod_list_", ""), row["sc_policy"])] = (
                float(row["alloc_at_100"]), float(row["alloc_at_130"]))
    return out


def main(argv=None) -> int:
    from kaiwo.simulator.offline import PAPER_NAMES, POLICIES
    from kaiwo.cli.simulate import parse_policies, parse_seeds

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(ROOT / "data" / "openb"),
                   help="folder of the openb CSVs, plain or .gz (default: the repository's data/openb)")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--policies", type=parse_policies, default=list(POLICIES))
    p.add_argument("--seeds", type=parse_seeds, default=list(range(42, 52)))
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--json", help="write every run's numbers here")
    args = p.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    # Every file is looked for before any worker starts: a missing one is named here, not as a
    # traceback from inside the process pool.
    missing = [n for n in ["openb_node_list_gpu_node.csv", *(f"openb_pod_list_{v}.csv" for v in variants)]
               if data_file(args.data, n) is None]
    if missing:
        p.error(f"not in {args.data} (plain or .gz): {', '.join(missing)}")
    if args.jobs < 1:
        p.error(f"--jobs {args.jobs}: must be at least 1")
    tasks = [(args.data, v, pol, s) for v in variants for pol in args.policies for s in args.seeds]
    t0 = time.perf_counter()
    results = {}
    from kaiwo_core.model.trace import TraceError
    try:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            for i, (v, pol, s, a100, a130, wall) in enumerate(pool.map(_run, tasks, chunksize=4)):
                results[(v, pol, s)] = (a100, a130, wall)
                print(f"\r{i + 1}/{len(tasks)} runs, {time.perf_counter() - t0:.0f}s", end="", file=sys.stderr)
    except TraceError as e:  # a malformed file, named with its line, column and value
        print(f"\neval_openb: {e}", file=sys.stderr)
        return 2
    print(file=sys.stderr)
    pub = published(args.data)

    def mean(v, pol, k=1):
        return float(np.mean([results[(v, pol, s)][k] for s in args.seeds]))

    header = ["VARIANT"] + [f"{pol}" for pol in args.policies]
    kaiwo = "frag" in args.policies
    if kaiwo:
        header += ["FGD paper", "frag median", "frag - FGD paper", ""]
    rows = []
    wins = 0
    for v in variants:
        row = [v] + [f"{mean(v, pol):.2f}" for pol in args.policies]
        if kaiwo:
            paper = pub.get((v, PAPER_NAMES["fgd"]), (float("nan"), float("nan")))[1]
            ours = mean(v, "frag")
            med = float(np.median([results[(v, "frag", s)][1] for s in args.seeds]))
            ok = ours >= round(paper, 2) - 1e-9
            wins += ok
            row += [f"{paper:.2f}", f"{med:.2f}", f"{ours - paper:+.2f}", "ok" if ok else "BELOW"]
        rows.append(row)
    cols = [header, *rows]
    widths = [max(len(str(r[i])) for r in cols) for i in range(len(header))]
    print(f"Mean GPU allocation ratio (%) at 130% arrival over seeds {args.seeds[0]}-{args.seeds[-1]} "
          f"({len(args.seeds)} seeds); FGD paper = the published FGD mean")
    for r in cols:
        print("  ".join(str(x).rjust(w) if i else str(x).ljust(w) for i, (x, w) in enumerate(zip(r, widths))))
    if kaiwo:
        print(f"frag at or above FGD's published mean on {wins}/{len(variants)} variants; "
              f"{len(tasks)} runs in {time.perf_counter() - t0:.0f}s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{"variant": v, "policy": pol, "seed": s, "allocAt100": a, "allocAt130": b, "wallSeconds": w}
                       for (v, pol, s), (a, b, w) in sorted(results.items())], f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
