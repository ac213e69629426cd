"""``kaiwo rebalance DUMP [--metrics FILE|URL]``: a plan of pod moves, read-only (nothing is evicted).

Goals in order: consolidation (room for pending pods and gangs that fit nowhere), hot-spot relief
(only with ``--metrics``: nodes whose measured load is above ``--hot-threshold``). See
:mod:`kaiwo_core.scheduling.rebalance` for which pods may move.
"""
from __future__ import annotations

import sys

from .usage import emit


def _devices(devs: list) -> str:
    from . import _devices_text
    return _devices_text(devs)


def render_table(doc: dict) -> str:
    from . import _table
    out = []
    if doc["moves"]:
        out.append(_table([[m["pod"], m["from"]["node"], _devices(m["from"]["devices"]), m["to"]["node"],
                            _devices(m["to"]["devices"]), m["reason"], ",".join(m["unlocks"]) or "-"]
                           for m in doc["moves"]],
                          ["POD", "FROM", "DEVICES", "TO", "DEVICES", "REASON", "UNLOCKS"]))
    else:
        out.append("no moves")
    if doc["unlocks"]:
        out.append("unlocks: " + ", ".join(doc["unlocks"]))
    lines = [f"invalid: {next(v for k, v in e.items() if k not in ('field', 'error'))}: {e['field']}: {e['error']}"
             for e in doc["invalidObjects"]] + [f"warning: {w}" for w in doc["warnings"]]
    if lines:
        out.append("\n".join(lines))
    st = doc["stats"]
    out.append(f"{st['moves']} moves; {st['movable']} of {st['running']} running pods may move; "
               f"{st['blockedUnits']} blocked pending units examined; {st['hotNodes']} hot nodes"
               f"{'' if st['metrics'] else ' (no metrics)'}; plan {st['timingsMs']['plan']:.1f} ms")
    return "\n\n".join(out)


def cmd_rebalance(args) -> int:
    from kaiwo_core import Snapshot
    from kaiwo_core.scheduling.rebalance import RebalanceConfig, plan_rebalance

    from ..dump import DumpError, load_dump
    from . import example_path

    try:
        objs = load_dump(args.dump or example_path())
    except (OSError, DumpError) as e:
        print(f"kaiwo rebalance: {e}", file=sys.stderr)
        return 2
    try:
        config = RebalanceConfig(max_moves=args.max_moves, max_moves_per_queue=args.max_moves_per_queue,
                                 min_runtime=args.min_runtime, hot_threshold=args.hot_threshold)
    except ValueError as e:
        print(f"kaiwo rebalance: {e}", file=sys.stderr)
        return 2
    snap = Snapshot.from_objects(objs)
    load, extra = None, []
    if args.metrics:
        from .monitor import SourceError, measured_load
        try:
            load, extra = measured_load(args.metrics, snap.cluster, snap.state, args.window)
        except SourceError as e:
            print(f"kaiwo rebalance: {e}", file=sys.stderr)
            return 2
    plan = plan_rebalance(snap, config, load=load)
    doc = plan.to_dict()
    doc["warnings"] = extra + doc["warnings"]
    if args.output != "table":
        emit(doc, args.output)
    else:
        print(render_table(doc))
    return 0


def add_commands(sub) -> None:
    r = sub.add_parser("rebalance", help="plan moves of running pods (read-only)",
                       description=__doc__.splitlines()[0])
    r.add_argument("dump", nargs="?", help="cluster dump, as for kaiwo schedule (- for standard input; default: the "
                   "bundled example)")
    r.add_argument("--metrics", help="exporter scrapes: a replay file, URL or .npz history (kaiwo monitor --source)")
    r.add_argument("--window", type=float, default=300.0, help="seconds of metrics to average (default 300)")
    r.add_argument("--hot-threshold", type=float, default=0.9, help="measured load (0..1) above which a node is hot")
    r.add_argument("--max-moves", type=int, default=16, help="most moves in the plan (default 16)")
    r.add_argument("--max-moves-per-queue", type=int, default=8, help="most moves of one queue's pods (default 8)")
    r.add_argument("--min-runtime", type=float, default=0.0, help="seconds a pod must have run before it moves")
    r.add_argument("--output", "-o", choices=("table", "json", "yaml"), default="table",
                   help="a readable table (default), JSON or YAML")
    r.set_defaults(func=cmd_rebalance)
