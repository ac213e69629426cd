"""``kaiwo``: Kaiwo's command line (``kaiwo COMMAND --help`` for each command).

``kaiwo schedule [DUMP]``  one scheduling cycle on a cluster dump (default: the bundled MI300X
                           example); a readable table, or ``--output json`` (DESIGN.md contract).
``kaiwo explain DUMP POD`` why one pod is where the cycle left it, node class by node class.
``kaiwo generate``         a synthetic cluster dump at a DESIGN.md scale (S, M, L).
``kaiwo monitor``, ``kaiwo alerts``, ``kaiwo recommend``  see :mod:`kaiwo.cli.monitor`.
``kaiwo controller``       the Kubernetes scheduler/controller, see :mod:`kaiwo.cli.controller`.
``kaiwo config``           the scheduler configuration file, see :mod:`kaiwo.cli.config`.
``kaiwo rebalance DUMP``   a plan of pod moves (read-only), see :mod:`kaiwo.cli.rebalance`.
``kaiwo plugins``          the registered plugins (built-in and ``kaiwo.plugins`` entry points).
``kaiwo completion SHELL`` a bash or zsh completion script, see :mod:`kaiwo.cli.completion`.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from importlib.resources import files

from . import completion, config, controller, monitor, rebalance, simulate, usage

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
        if "cus" in d:  # what the pod gets, absolute (a fraction's size depends on the partition)
            s += f" ({d['cus']}CU/{d['memoryGiB']:g}GiB)" if d["gpuCUs"] else f" ({d['memoryGiB']:g}GiB)"
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


#: 9999-12-31T23:59:59Z: the last time a date can show.
LATEST = 253402300799.0


def parse_now(text: str | None) -> float | None:
    """``--now``: None (not given) is the wall clock; ``dump`` the newest pod creation time in the
    dump (the library's default: the same dump always gives the same decisions); else epoch
    seconds or an RFC 3339 time. Raises ValueError naming the value."""
    if text is None:
        return time.time()
    if text == "dump":
        return None
    try:
        value = float(text)
    except ValueError:
        from datetime import datetime, timezone
        try:
            t = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"--now {text!r}: expected an RFC 3339 time (2026-11-28T16:00:00Z), "
                             "epoch seconds or 'dump'") from None
        value = (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp()
    if not 0 <= value <= LATEST:  # NaN too: times are written back as dates (years 1970-9999)
        raise ValueError(f"--now {text!r}: must be a time from 1970 to 9999")
    return value


def _cycle(args, command: str):
    """Read the dump and run one cycle as ``args`` say; (decisions, None) or (None, exit code)."""
    from kaiwo_core import Snapshot, schedule

    from ..dump import DumpError, load_dump

    cfg = config.load(command, args.config, {"strategy": args.strategy} if args.strategy else None)
    if cfg is None:
        return None, 2
    if args.metrics and cfg.strategy != "load":
        print(f"kaiwo {command}: --metrics is the measured load of the load strategy, not of {cfg.strategy} "
              "(use --strategy load or strategy: load in --config)", file=sys.stderr)
        return None, 2
    try:
        now = parse_now(args.now)
    except ValueError as e:
        print(f"kaiwo {command}: {e}", file=sys.stderr)
        return None, 2
    path = args.dump or example_path()
    t0 = time.perf_counter()
    try:
        objs = load_dump(path)
    except (OSError, DumpError) as e:
        print(f"kaiwo {command}: {e}", file=sys.stderr)
        return None, 2
    snap = Snapshot.from_objects(objs, scheduler_name=args.scheduler_name)
    node_load = None
    if args.metrics:
        from .monitor import SourceError, measured_load
        try:
            load, warnings = measured_load(args.metrics, snap.cluster, snap.state, args.window)
        except SourceError as e:
            print(f"kaiwo {command}: {e}", file=sys.stderr)
            return None, 2
        node_load = dict(zip(snap.cluster.names, load.tolist()))
        snap.warnings[:0] = warnings  # the output's warnings: stale or missing series first
    read = time.perf_counter() - t0
    decisions = schedule(snap, now=now, **cfg.schedule_kwargs(node_load=node_load))
    decisions.timings["read"] = read
    return decisions, 0


#: Output lists whose entries name one pod (``--pod`` keeps only those of the pods asked for).
POD_LISTS = ("bindings", "preemptions", "pending", "rejected", "running")


def cmd_schedule(args) -> int:
    decisions, code = _cycle(args, "schedule")
    if decisions is None:
        return code
    doc = decisions.to_dict()
    if args.pod:
        wanted = set(args.pod)
        for key in POD_LISTS:
            doc[key] = [e for e in doc[key] if e["pod"] in wanted]
        seen = {e["pod"] for key in POD_LISTS for e in doc[key]}
        for name in sorted(wanted - seen):
            print(f"kaiwo schedule: no pod {name} in the dump", file=sys.stderr)
    if args.output == "table":
        print(render_table(doc))
    else:
        usage.emit(doc, args.output, args.compact)
    return 1 if args.fail_on_rejected and doc["rejected"] else 0


def render_explain(doc: dict) -> str:
    """``kaiwo explain`` as text."""
    out = [f"pod {doc['pod']}: {doc['status']}"]
    if "node" in doc:
        out[0] += f" on {doc['node']}" + (f" ({_devices_text(doc['devices'])})" if doc.get("devices") else "")
    if "error" in doc:
        out.append(f"  {doc['field']}: {doc['error']}")
    if "reason" in doc:
        out.append(f"  reason: {doc['reason']}")
    if doc.get("note"):
        out.append(f"  note: {doc['note']}")
    if doc.get("nodeClasses"):
        out.append("node classes (nodes grouped by what the pod sees):")
        for c in doc["nodeClasses"]:
            nodes = c["nodes"]
            shown = ", ".join(nodes[:5]) + (f" and {len(nodes) - 5} more" if len(nodes) > 5 else "")
            out.append(f"  {len(nodes)} node{'s' if len(nodes) > 1 else ''} ({shown}): "
                       + ("; ".join(c["missing"]) or "fits"))
    if doc.get("nearMiss"):
        m = doc["nearMiss"]
        missing = "; ".join(m["missing"])
        out.append(f"best near miss: node {m['node']}: "
                   + (f"{missing}; everything else fits" if missing else "fits on its own"))
    return "\n".join(out)


def cmd_explain(args) -> int:
    from kaiwo_core.scheduling.explain import explain

    decisions, code = _cycle(args, "explain")
    if decisions is None:
        return code
    doc = explain(decisions, args.pod)
    if args.output != "text":
        usage.emit(doc, args.output)
    else:
        print(render_explain(doc))
    return 1 if doc["status"] == "unknown" else 0


def _cycle_options(s) -> None:
    s.add_argument("--strategy", choices=("binpack", "spread", "frag", "load"),
                   help="node scoring (default: the --config file's, else binpack); load: the least "
                   "allocation and measured load (--metrics)")
    s.add_argument("--metrics", metavar="FILE|URL",
                   help="exporter scrapes giving the load strategy its measured load per node: a replay "
                   "file, URL or .npz history (as kaiwo monitor --source, kaiwo rebalance --metrics)")
    s.add_argument("--window", type=float, default=300.0,
                   help="seconds of metrics to average (default 300)")
    config.add_config_flag(s)
    s.add_argument("--scheduler-name", default="kaiwo",
                   help="pending pods with this schedulerName are Kaiwo's (default: kaiwo)")
    s.add_argument("--now", metavar="TIME",
                   help="the cycle's time (ages pending pods, expires reservations): an RFC 3339 time, "
                   "epoch seconds, or 'dump' = the newest pod creation time in the dump, so that a "
                   "dump always gives the same decisions (default: the wall clock)")


def summary(doc: str | None) -> str:
    """The first sentence of a docstring's first paragraph, on one line, as plain text."""
    para = " ".join((doc or "").strip().split("\n\n", 1)[0].split())
    m = re.match(r"(.+?(?<!\be\.g)(?<!\bi\.e)[.!?])(\s|$)", para)
    return usage.plain(m.group(1) if m else para)


def cmd_plugins(args) -> int:
    from kaiwo_core import plugins

    import kaiwo_core.scheduling.filters  # noqa: F401  (registers the built-ins)
    for name in plugins.available():
        print(f"{name:16} {summary(plugins._REGISTRY[name].__doc__)}")
    for why in plugins.BROKEN.values():
        print(f"kaiwo plugins: warning: {why}", file=sys.stderr)
    return 0


def partition_mode(text: str) -> str:
    """``--partition`` of ``kaiwo generate``: a node partition label value (``cpx_nps4``)."""
    from kaiwo_core.model.gpu import PartitionError, parse_mode_label

    try:
        compute, memory = parse_mode_label(text)
    except PartitionError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return f"{compute}_{memory}".lower()


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
    p = argparse.ArgumentParser(prog="kaiwo", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("schedule", help="one scheduling cycle on a cluster dump")
    s.add_argument("dump", nargs="?", help="multi-document YAML / kind: List / JSON of Nodes, Pods, "
                   "PriorityClasses..., gzipped or not; - for standard input (default: the bundled "
                   "MI300X example)")
    s.add_argument("--output", "-o", choices=("table", "json", "yaml"), default="table",
                   help="a readable table (default), or the whole result as JSON or YAML")
    s.add_argument("--compact", action="store_true", help="JSON on one line")
    s.add_argument("--fail-on-rejected", action="store_true",
                   help="exit status 1 when a pod (of those listed, with --pod) is rejected as invalid")
    s.add_argument("--pod", action="append", metavar="NS/NAME",
                   help="list only this pod among bindings, preemptions, pending, rejected and running "
                   "(repeatable; queues and stats stay those of the whole cycle)")
    _cycle_options(s)
    s.set_defaults(func=cmd_schedule)
    e = sub.add_parser("explain", help="why one pod is where a scheduling cycle leaves it",
                       description="Run one cycle on the dump and explain one pod: where it went, or "
                       "why it was rejected or is pending; for a pod that could not be placed, every "
                       "node class (nodes grouped by what the pod sees: the filter that rejects it with "
                       "the value, the resources missing) and the best near-miss node with what it "
                       "lacks. Exit status 1 if the pod is not in the dump.")
    e.add_argument("dump", help="a cluster dump, as for 'kaiwo schedule' (- for standard input)")
    e.add_argument("pod", help="the pod, namespace/name")
    e.add_argument("--output", "-o", choices=("text", "json", "yaml"), default="text",
                   help="readable text (default), JSON or YAML")
    _cycle_options(e)
    e.set_defaults(func=cmd_explain)
    g = sub.add_parser("generate", help="write a synthetic MI300X cluster dump (JSON kind: List)")
    g.add_argument("--scale", choices=("S", "M", "L"), default="S",
                   help="S = 100 nodes / 1,000 pending pods, M = 1,000 / 10,000, L = 10,000 / 100,000")
    g.add_argument("--partition", default="spx_nps1", type=partition_mode, help="node partition mode (default spx_nps1)")
    g.add_argument("--running", action="store_true",
                   help="also add the scale's running pods, already placed, with their assignments")
    g.add_argument("--seed", type=int, default=0, help="random seed of the pods' shapes (default 0)")
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
    completion.add_commands(sub, p)
    return usage.finish(p)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    usage.setup_logging(args)
    try:
        return args.func(args)
    except BrokenPipeError:
        # The reader went away (`kaiwo schedule | head -1`): stop quietly, as other Unix tools do.
        # Later writes (and the interpreter's final flush) go to /dev/null instead of raising again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by the broken pipe


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
