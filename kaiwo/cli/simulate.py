"""``kaiwo simulate``: trace replays on the scheduling core, with tables, JSON, plots and reports.

With no arguments it replays the bundled openb ``default`` pod list on the openb GPU node list
following the FGD paper's procedure, once per policy (seed 42), and prints the GPU allocation ratio
at 100% and 130% of arrived GPU requests. ``--online`` replays a Philly-format job list with
departures and queues instead (see :mod:`kaiwo.simulator.online`).
"""
from __future__ import annotations

import argparse
import json
import re
import sys

from kaiwo_core.model.trace import TraceError

from . import config


def parse_seeds(text: str) -> list:
    """``42``, ``42,43``, ``42-51`` (inclusive), or a mix: ``42-44,50``."""
    out = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
            raise argparse.ArgumentTypeError(f"bad seed list {text!r} (expected e.g. 42, 42,43 or 42-51)")
        lo = int(m.group(1))
        out.extend(range(lo, int(m.group(2) or lo) + 1))
    return out


def parse_policies(text: str) -> list:
    from ..simulator.offline import POLICIES
    names = [p.strip() for p in text.split(",") if p.strip()]
    if names == ["all"]:
        return list(POLICIES)
    # load: not in "all" -- a replay measures nothing, so it places by allocation alone (as spread)
    known = (*POLICIES, "load")
    bad = [p for p in names if p not in known]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown policy {', '.join(bad) or text!r} "
                                         f"(known: {', '.join(known)}, or all)")
    return names


def _progress(args) -> bool:
    """A progress bar only on a terminal: in a log file its carriage-return redraws pile up."""
    return not args.quiet and sys.stderr.isatty()


def _emit_json(doc: dict, target: str) -> None:
    if target == "-":
        json.dump(doc, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        with open(target, "w") as f:
            json.dump(doc, f, indent=1)


def cmd_simulate(args) -> int:
    cfg = config.load("simulate", args.config)
    if cfg is None:
        return 2
    if args.config and not args.policy_given:  # the file's strategy, unless --policy says otherwise
        args.policy = [cfg.strategy]
    if args.online:
        return _online(args, cfg)
    from ..simulator import report
    from ..simulator.offline import load_scenario, run_all, summary_table

    try:
        scn = load_scenario(args.trace, args.nodes, ratio=args.ratio, gpu_model=args.gpu_model,
                            partition=args.partition, isolation=args.isolation)
        if args.gpu_model is not None:
            scn.per_gpu  # validates model and partition before the long part
            from ..simulator.offline import amd_cluster
            amd_cluster(scn.nodes, args.gpu_model, args.partition)
    except (TraceError, OSError, ValueError, KeyError) as e:
        print(f"kaiwo simulate: {e}", file=sys.stderr)
        return 2
    summaries = run_all(scn, args.policy, args.seeds, show_progress=_progress(args), plugins=cfg.plugins)
    table = summary_table(summaries, scn)
    if args.json is not None:
        _emit_json({"trace": scn.name, "pods": len(scn.trace), "nodes": len(scn.nodes), "gpus": scn.n_gpus,
                    "ratio": scn.ratio, "gpuModel": scn.gpu_model, "partition": scn.partition if scn.gpu_model else None,
                    "isolation": scn.isolation if scn.gpu_model else None,
                    "policies": [s.to_dict() for s in summaries]}, args.json)
    if args.json != "-":
        print(table.text())
    try:
        png = None
        if args.plot or args.html:
            title = report.offline_title(scn, summaries)
            png = report.allocation_png(summaries, title)
        if args.plot:
            report.write_png(args.plot, png)
        if args.html:
            report.html_report(f"kaiwo simulate: {title.splitlines()[0]}",
                               [("Allocation ratio at 100% and 130% arrival", table, None),
                                ("Allocation ratio against arrived workload", None, png)], args.html)
    except report.ReportError as e:
        print(f"kaiwo simulate: {e}", file=sys.stderr)
        return 2
    return 0


def _online(args, cfg) -> int:
    from ..simulator import report
    from ..simulator.offline import ProgressBar
    from ..simulator.online import read_jobs_csv, read_vc_nodes, replay_online

    if not args.trace or not args.vc_nodes:
        print("kaiwo simulate --online: needs --trace (a Philly-format job CSV: timestamp, duration, "
              "num_gpus, gpu_time, cluster) and --vc-nodes (vc, node num)", file=sys.stderr)
        return 2
    policy = args.policy[0] if args.policy_given or args.config else "binpack"
    try:
        jobs = read_jobs_csv(args.trace, args.max_jobs)
        vc = read_vc_nodes(args.vc_nodes)
    except (TraceError, OSError) as e:
        print(f"kaiwo simulate: {e}", file=sys.stderr)
        return 2
    if args.node_scale != 1.0:
        vc = {k: (max(1, round(v * args.node_scale)) if v > 0 else 0) for k, v in vc.items()}
    bar = ProgressBar(len(jobs)) if _progress(args) else None
    result = replay_online(jobs, vc, policy, args.period, reclaim=args.reclaim, config=cfg,
                           progress=(lambda d, t: bar.update(d, f"online {policy}")) if bar else None)
    if bar:
        bar.close()
    rows = [q.to_dict() for q in result.queues]
    header = ["QUEUE", "QUOTA GPUs", "PLACED", "WAITING", "PREEMPTED", "WAIT MEAN s", "WAIT MEDIAN s",
              "WAIT P95 s"]
    table_rows = [[r["queue"], r["quotaGpus"], r["jobsPlaced"], r["jobsWaitingAtEnd"], r["jobsPreempted"],
                   r["waitMeanS"], r["waitMedianS"], r["waitP95S"]] for r in rows]
    fair = result.mean_fairness()
    summary = (f"{result.jobs} jobs on {sum(vc.values())} nodes x 8 GPUs, policy {policy}, reclaim "
               f"{args.reclaim}, cycles every {args.period:g} s: {sum(r['jobsPreempted'] for r in rows)} "
               f"preemptions, mean GPU utilisation {100 * result.mean_utilization():.1f}%, "
               f"mean Jain fairness {'-' if fair != fair else f'{fair:.3f}'}, {result.cycles} cycles, "
               f"{result.wall:.1f} s")
    table = report.Table(header, table_rows, note=summary)
    if args.json is not None:
        _emit_json(result.to_dict(), args.json)
    if args.json != "-":
        print(table.text())
    try:
        if args.plot or args.html:
            title = report.online_title(jobs.path, result, sum(vc.values()), args.period, args.node_scale)
            png = report.online_png(result, title)
            if args.plot:
                report.write_png(args.plot, png)
            if args.html:
                report.html_report(f"kaiwo simulate --online: {title.splitlines()[0]}", [
                    ("Waiting time per queue", table, report.waiting_png(result, title)),
                    ("GPU utilisation and fairness over time", None, png)], args.html)
    except report.ReportError as e:
        print(f"kaiwo simulate: {e}", file=sys.stderr)
        return 2
    return 0


class _PolicyAction(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace.policy_given = True


def add_commands(sub) -> None:
    """Register ``kaiwo simulate`` on the ``kaiwo`` subparsers."""
    from ..simulator.offline import POLICIES
    from ..simulator.online import DEFAULT_RECLAIM, RECLAIM_CHOICES

    s = sub.add_parser("simulate", help="replay a trace (default: the bundled openb trace, every policy)",
                       description="Replay a trace on Kaiwo's scheduling core: FGD's experiment on the "
                                   "openb trace by default (every policy, seed 42), or --online a job list "
                                   "with departures and queues.")
    s.add_argument("--trace", help="pod CSV in openb format (five-column multigpu files too); with "
                   "--online a Philly-format job CSV (default: the bundled openb default trace)")
    s.add_argument("--nodes", help="node CSV in openb format: sn, cpu_milli, memory_mib, gpu, model "
                   "(default: the bundled openb GPU node list)")
    s.add_argument("--policy", type=parse_policies, default=list(POLICIES), action=_PolicyAction,
                   help=f"comma list of {', '.join(POLICIES)} (default: all)")
    s.add_argument("--seeds", type=parse_seeds, default=[42],
                   help="seeds, e.g. 42, 42,43 or 42-51 (the paper's ten; default: 42)")
    s.add_argument("--ratio", type=float, default=1.3,
                   help="arrivals until GPU requests reach this share of capacity (default 1.3)")
    s.add_argument("--json", nargs="?", const="-", metavar="FILE",
                   help="write results as JSON to FILE (no FILE: to standard output, instead of the table)")
    s.add_argument("--plot", metavar="FILE.png", help="allocation ratio against arrived workload, one line per policy")
    s.add_argument("--html", metavar="FILE", help="a self-contained HTML report (tables and plots)")
    s.add_argument("--quiet", action="store_true",
                   help="no progress bar (there is one only when standard error is a terminal)")
    s.add_argument("--config", metavar="FILE",
                   help="a KaiwoSchedulerConfiguration: its strategy is the policy unless --policy is given, "
                        "its plugins join the pipeline; --online also takes its ordering, preemption and "
                        "reservation settings")
    amd = s.add_argument_group("AMD mode (replay on AMD Instinct GPUs of the same count)")
    amd.add_argument("--gpu-model", help="e.g. MI300X: nodes of 8 such GPUs replace the node list's GPUs")
    amd.add_argument("--partition", default="SPX", type=str.upper,
                     help="compute partition mode: SPX, DPX, QPX or CPX (MI300A: SPX, TPX, CPX; default SPX)")
    amd.add_argument("--isolation", default="time-slicing", choices=("time-slicing", "xcd"),
                     help="fractions of one partition: time-sliced, or whole XCDs of their own (default "
                          "time-slicing)")
    on = s.add_argument_group("online mode (departures and queues)")
    on.add_argument("--online", action="store_true", help="replay a Philly-format job list with queues")
    on.add_argument("--vc-nodes", help="CSV of virtual clusters and their node counts (vc, node num)")
    on.add_argument("--period", type=float, default=60.0, help="seconds between scheduling cycles (default 60)")
    on.add_argument("--node-scale", type=float, default=1.0,
                    help="scale every virtual cluster's node count (e.g. 0.2 for a contended cluster)")
    on.add_argument("--max-jobs", type=int, help="replay only the first N jobs by arrival")
    on.add_argument("--reclaim", choices=RECLAIM_CHOICES, default=DEFAULT_RECLAIM,
                    help="every queue's reclaimStrategy, or none: no reclaim or preemption (default "
                         f"{DEFAULT_RECLAIM}, a KaiwoQueue's default)")
    s.set_defaults(func=cmd_simulate, policy_given=False)
