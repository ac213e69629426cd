"""Kernel vs. pure-Python reference medians from a pytest-benchmark JSON file.

Usage::

    KAIWO_BENCH_SCALES=S,M python -m pytest tests/benchmarks --benchmark-enable --benchmark-only \\
        --benchmark-json /tmp/bench.json
    python asv_bench/ratio.py /tmp/bench.json [--markdown]

Prints one row per benchmark group (``place <scale> <strategy>``): median kernel time, median
reference time (ms), rounds of each and the ratio reference / kernel (how many times faster the
compiled kernel is). Rows come from ``extra_info`` (scale, strategy, impl) set by
``tests/benchmarks/test_bench_placement.py``; groups missing one side are shown with ``-``.
"""
from __future__ import annotations

import argparse
import json
import sys

ORDER = {"S": 0, "M": 1, "L": 2, "binpack": 0, "spread": 1, "frag": 2, "load": 3}


def rows(doc: dict) -> list[dict]:
    groups: dict = {}
    for b in doc.get("benchmarks", []):
        info = b.get("extra_info") or {}
        impl = info.get("impl")
        if impl not in ("kernel", "reference"):
            continue
        key = (info.get("scale", "?"), info.get("strategy", "?"))
        groups.setdefault(key, {})[impl] = b["stats"]
    out = []
    for (scale, strategy), g in sorted(groups.items(),
                                       key=lambda kv: tuple(ORDER.get(x, 9) for x in kv[0])):
        k, r = g.get("kernel"), g.get("reference")
        out.append({
            "scale": scale, "strategy": strategy,
            "kernel_ms": k["median"] * 1e3 if k else None, "kernel_rounds": k["rounds"] if k else None,
            "reference_ms": r["median"] * 1e3 if r else None,
            "reference_rounds": r["rounds"] if r else None,
            "ratio": r["median"] / k["median"] if k and r and k["median"] > 0 else None,
        })
    return out


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("json", help="file written by pytest --benchmark-json")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args(argv)
    with open(args.json) as f:
        doc = json.load(f)
    table = rows(doc)
    if not table:
        print(f"{args.json}: no kernel/reference benchmarks (run with --benchmark-enable)",
              file=sys.stderr)
        return 1
    head = ["scale", "strategy", "kernel ms (median)", "reference ms (median)", "ratio ref/kernel",
            "rounds k/r"]
    body = [[r["scale"], r["strategy"], _fmt(r["kernel_ms"], ".3f"), _fmt(r["reference_ms"], ".1f"),
             _fmt(r["ratio"], ",.0f") + ("x" if r["ratio"] else ""),
             f"{_fmt(r['kernel_rounds'], 'd')}/{_fmt(r['reference_rounds'], 'd')}"] for r in table]
    mi = doc.get("machine_info") or {}
    cpu = (mi.get("cpu") or {}).get("brand_raw", "?")
    print(f"# {cpu}, Python {mi.get('python_version', '?')}, {doc.get('datetime', '')}")
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join("---" for _ in head) + "|")
        for row in body:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(head)]
        print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
        for row in body:
            print("  ".join(c.rjust(w) if i >= 2 else c.ljust(w)
                            for i, (c, w) in enumerate(zip(row, widths))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
