"""``kaiwo`` command line.

``kaiwo schedule [DUMP]``  one scheduling cycle on a cluster dump (default: the bundled MI300X
                           example); a readable table, or ``--output json`` (DESIGN.md contract).
``kaiwo generate``         a synthetic cluster dump at a DESIGN.md scale (S, M, L).
``kaiwo monitor``, ``kaiwo alerts``, ``kaiwo recommend``  see :mod:`kaiwo.cli.monitor`.
``kaiwo controller``       the Kubernetes scheduler/controller, see :mod:`kaiwo.cli.controller`.
``kaiwo config``           the scheduler configuration file, see :mod:`kaiwo.cli.config`.
``kaiwo rebalance DUMP``   a plan of pod moves (read-only), see :mod:`kaiwo.cli.rebalance`.
``kaiwo plugins``          the registered plugins (built-in and ``kaiwo.plugins`` entry points).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from importlib.resources import files

from . import config, controller, monitor, rebalance, simulate

EXAMPLE_DUMP = "mi300x-example.yaml"


def example_path() -> str:
    return str(files("kaiwo") / "data" / EXAMPLE_DUMP)


def _table(rows: list[list], header: list[str]) -> str:
    cols = [header, *rows]
    widths = [max(len(str(r[i])) for r in cols) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*map(str, r)).rstrip() for r in cols)


def _devices_text(devices: list[dict]) -> str:
    parts = []
    for d in devices:
        s = f"gpu{d['gpu']}"
        if d["partition"]:
            s += f".p{d['partition']}"
        if 0 < d["fraction"] < 1:
            s += f" x{d['fraction']:g}"
        elif d["fraction"] == 0:  # memory-only sharing pod
            s += f" {d['memoryMiB']}MiB"
        if d["xcds"] and d["fraction"] < 1:
            s += f" xcd{','.join(map(str, d['xcds']))}"
        parts.append(s)
    return " ".join(parts) or "-"


def render_table(doc: dict) -> str:
    out = []
    if doc["bindings"]:
        out.append(_table([[b["pod"], b["node"], _devices_text(b["devices"])] for b in doc["bindings"]],
                          ["POD", "NODE", "DEVICES"]))
    if doc["pending"]:
        out.append(_table([[p["pod"], p["reason"]] for p in doc["pending"]], ["PENDING", "REASON"]))
    if doc["rejected"]:
        out.append(_table([[r["pod"], r["field"], r["error"]] for r in doc["rejected"]],
                          ["REJECTED", "FIELD", "ERROR"]))
    if doc.get("queues"):
        out.append(_table([[q["name"], q["parent"] or "-", q["priority"],
                            f"{q['deserved']['gpu']:g}", f"{q['fairShare']['gpu']:g}",
                            f"{q['allocated']['gpu']:g}", q["pendingPods"]] for q in doc["queues"]],
                          ["QUEUE", "PARENT", "PRIO", "DESERVED GPU", "FAIR GPU", "ALLOCATED GPU", "PENDING"]))
        # Per-GPU-model columns, when some queue names a model: one row per queue and model.
        rows = [[q["name"], m, f"{q['deserved']['gpuModels'][m]:g}", f"{q['fairShare']['gpuModels'][m]:g}",
                 f"{q['allocated']['gpuModels'][m]:g}"]
                for q in doc["queues"] for m in q["deserved"].get("gpuModels", {})]
        if rows:
            out.append(_table(rows, ["QUEUE", "GPU MODEL", "DESERVED", "FAIR", "ALLOCATED"]))
    if doc.get("reservations"):
        # Whole nodes by name, held GPUs as node/gpu<index>.<partition>:<XCDs> (JSON has the rest).
        out.append(_table([[r["name"], r["queue"] or r["job"],
                            ",".join(r["nodes"] + [f"{d['node']}/gpu{d['gpu']}.{d['partition']}"
                                                   + (":" + "".join(map(str, d["xcds"])) if d["xcds"] else "")
                                                   for d in r.get("devices", [])]),
                            r["until"] or "-", r["reason"]] for r in doc["reservations"]],
                          ["RESERVATION", "FOR", "HOLDS", "UNTIL", "WHY"]))
    for key, kind in (("invalidQueues", "kaiwoqueue"), ("invalidJobs", "kaiwojob"),
                      ("invalidReservations", "kaiworeservation")):
        if doc.get(key):
            out.append(_table([[r[kind], r["field"], r["error"]] for r in doc[key]],
                              [f"INVALID {kind.upper()}", "FIELD", "ERROR"]))
    if doc["invalidNodes"]:
        out.append(_table([[r["node"], r["field"], r["error"]] for r in doc["invalidNodes"]],
                          ["INVALID NODE", "FIELD", "ERROR"]))
    for w in doc["warnings"]:
        out.append(f"warning: {w}")
    st = doc["stats"]
    out.append(f"{st['nodes']} nodes, {st['gpus']} logical GPUs; {st['pods']} pods: {st['bound']} bound, "
               f"{st['pending']} pending, {st['rejected']} rejected, {st['running']} running; "
               f"cycle {st['timingsMs'].get('cycle', 0):.1f} ms, read {st['timingsMs'].get('read', 0):.0f} ms")
    return "\n\n".join(out)


def cmd_schedule(args) -> int:
    from kaiwo_core import Snapshot, schedule

    from ..dump import DumpError, load_dump

    cfg = config.load("schedule", args.config, {"strategy": args.strategy} if args.strategy else None)
    if cfg is None:
        return 2
    path = args.dump or example_path()
    t0 = time.perf_counter()
    try:
        objs = load_dump(path)
    except (OSError, DumpError) as e:
        print(f"kaiwo schedule: {e}", file=sys.stderr)
        return 2
    snap = Snapshot.from_objects(objs, scheduler_name=args.scheduler_name)
    read = time.perf_counter() - t0
    decisions = schedule(snap, **cfg.schedule_kwargs())
    decisions.timings["read"] = read
    doc = decisions.to_dict()
    if args.output == "json":
        json.dump(doc, sys.stdout, indent=None if args.compact else 1)
        sys.stdout.write("\n")
    else:
        print(render_table(doc))
    return 0


def cmd_plugins(args) -> int:
    from kaiwo_core import plugins

    import kaiwo_core.scheduling.filters  # noqa: F401  (registers the built-ins)
    for name in plugins.available():
        cls = plugins._REGISTRY[name]
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        print(f"{name:16} {doc}")
    for why in plugins.BROKEN.values():
        print(f"kaiwo plugins: warning: {why}", file=sys.stderr)
    return 0


def cmd_generate(args) -> int:
    from ..simulator.synth import dump_objects

    objs = dump_objects(args.scale, seed=args.seed, partition=args.partition, running=args.running)
    doc = {"apiVersion": "v1", "kind": "List", "items": objs}
    if args.output == "-":
        json.dump(doc, sys.stdout)
    else:
        with open(args.output, "w") as f:
            json.dump(doc, f)
    return 0


def cmd_warmup(args) -> int:
    from ..warmup import cache_stats, seed_cache, warm_up

    t0 = time.perf_counter()
    seeded = seed_cache()
    steps = warm_up()
    stats = cache_stats()
    doc = {"seconds": round(time.perf_counter() - t0, 3), "seededFiles": seeded, "kernels": stats["kernels"],
           "compiled": stats["misses"], "loadedFromCache": stats["hits"],
           "steps": {k: round(v, 4) for k, v in steps.items()}}
    if args.json:
        json.dump(doc, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(f"{doc['kernels']} kernels ready in {doc['seconds']:.1f} s: {doc['compiled']} compiled, "
              f"{doc['loadedFromCache']} loaded from the cache")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kaiwo", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("schedule", help="one scheduling cycle on a cluster dump")
    s.add_argument("dump", nargs="?", help="multi-document YAML / kind: List / JSON of Nodes, Pods, "
                   "PriorityClasses... (default: the bundled MI300X example)")
    s.add_argument("--output", "-o", choices=("table", "json"), default="table")
    s.add_argument("--compact", action="store_true", help="JSON on one line")
    s.add_argument("--strategy", choices=("binpack", "spread", "frag"),
                   help="node scoring (default: the --config file's, else binpack)")
    config.add_config_flag(s)
    s.add_argument("--scheduler-name", default="kaiwo",
                   help="pending pods with this schedulerName are Kaiwo's (default: kaiwo)")
    s.set_defaults(func=cmd_schedule)
    g = sub.add_parser("generate", help="write a synthetic MI300X cluster dump (JSON kind: List)")
    g.add_argument("--scale", choices=("S", "M", "L"), default="S",
                   help="S = 100 nodes / 1,000 pending pods, M = 1,000 / 10,000, L = 10,000 / 100,000")
    g.add_argument("--partition", default="spx_nps1", help="node partition mode (default spx_nps1)")
    g.add_argument("--running", action="store_true",
                   help="also add the scale's running pods, already placed, with their assignments")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--output", "-o", default="-", help="file (default: standard output)")
    g.set_defaults(func=cmd_generate)
    monitor.add_commands(sub)
    controller.add_commands(sub)
    simulate.add_commands(sub)
    config.add_commands(sub)
    rebalance.add_commands(sub)
    w = sub.add_parser("warmup", help="compile the monitoring kernels into Numba's cache (NUMBA_CACHE_DIR)",
                       description="Run every monitoring path once on the bundled example so its Numba "
                       "kernels are compiled and cached; images run it at build time (deploy/Dockerfile). "
                       "With KAIWO_NUMBA_CACHE_SEED set, that cache is first copied into NUMBA_CACHE_DIR.")
    w.add_argument("--json", action="store_true", help="JSON summary")
    w.set_defaults(func=cmd_warmup)
    pl = sub.add_parser("plugins", help="list registered plugins")
    pl.set_defaults(func=cmd_plugins)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:
        # The reader went away (`kaiwo schedule | head -1`): stop quietly, as other Unix tools do.
        # Later writes (and the interpreter's final flush) go to /dev/null instead of raising again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by the broken pipe


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
