"""``kaiwo monitor``, ``kaiwo alerts`` and ``kaiwo recommend``: monitoring from the command line.

``kaiwo monitor [--source FILE_OR_URL]``  efficiency (allocated vs used per pod, queue, node), idle
                                          GPUs and the alerts the rules raised over the scrapes
``kaiwo alerts [--rules RULES]``          validate a rules file, then evaluate it over the scrapes
``kaiwo recommend``                       request changes from the usage (right-sizing)

Sources (``--source``, default: the bundled example of 2 nodes x 8 MI300X over 15 minutes):

* a *replay file*: Prometheus text expositions, each introduced by a line ``# SCRAPE <unix-seconds>``
  (timestamps increasing; those lines are plain comments to any other parser). A file without any
  ``# SCRAPE`` line is a single scrape taken now. ``.gz`` files are decompressed.
* an ``http://`` or ``https://`` URL of an exporter: scraped ``--count`` times, ``--interval``
  seconds apart.
* a ``.npz`` history file written by ``--save`` (or :func:`kaiwo_core.monitoring.history.save`).

Alerts are evaluated at every scrape time in order, as a running alert manager would have.
Malformed exposition lines are reported on standard error (with their line numbers) and skipped.
Exit status: 0 on success, 1 when the rules file has invalid rules (the valid ones still run), 2 when
the source or the rules file cannot be read at all.
"""
from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import replace
import sys
import time
import urllib.error
import urllib.request
from importlib.resources import files

EXAMPLE_SCRAPES = "example-scrapes.prom"
EXAMPLE_RULES = "example-alert-rules.yaml"
MAX_SHOWN_ERRORS = 10


def data_path(name: str) -> str:
    return str(files("kaiwo") / "data" / name)


class SourceError(Exception):
    """The source cannot be read (the command exits with status 2)."""


def _duration(text: str) -> float:
    import argparse

    from kaiwo_core.monitoring.alerts import parse_duration

    try:
        value = parse_duration(text if not text.replace(".", "", 1).isdigit() else float(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).split(": ", 1)[-1]) from None
    return value


def load_source(source: str | None, count: int = 1, interval: float = 15.0):
    """A :class:`MetricsStore` filled from a replay file, URL or ``.npz`` history.

    Returns (store, label shown to the user, list of ExpositionError).
    """
    from kaiwo_core.monitoring.exposition import ScrapeFileError, split_scrapes
    from kaiwo_core.monitoring.history import HistoryError, load
    from kaiwo_core.monitoring.metrics_store import MetricsStore, StoreError

    src = source or data_path(EXAMPLE_SCRAPES)
    errors: list = []
    if src.startswith(("http://", "https://")):
        if count < 1 or interval < 0:
            raise SourceError(f"--count {count} / --interval {interval}: need count >= 1 and interval >= 0")
        store = MetricsStore(max(256, count + 1))
        for k in range(count):
            if k:
                time.sleep(interval)  # pacing of a live scrape loop, not a measurement
            try:
                with urllib.request.urlopen(src, timeout=30) as resp:
                    body = resp.read()
            except (urllib.error.URLError, OSError) as e:
                raise SourceError(f"{src}: cannot scrape: {getattr(e, 'reason', e)}") from None
            rep = store.ingest_text(body, time.time(), source=src)
            errors.extend(rep.errors)
        return store, src, errors
    if src.endswith(".npz"):
        try:
            return load(src), src, errors
        except HistoryError as e:
            raise SourceError(str(e)) from None
    try:
        opener = gzip.open if src.endswith(".gz") else open
        with opener(src, "rb") as f:
            buf = f.read()
    except (EOFError, zlib.error) as e:  # a truncated or corrupt .gz (BadGzipFile is an OSError)
        raise SourceError(f"{src}: not a readable gzip file: {e}") from None
    except OSError as e:
        raise SourceError(f"{src}: {e.strerror or e}") from None
    try:
        chunks = split_scrapes(buf, src, default_timestamp=time.time())
    except ScrapeFileError as e:
        raise SourceError(str(e)) from None
    store = MetricsStore(max(256, len(chunks) + 1))
    for ch in chunks:
        try:
            rep = store.ingest_text(ch.text, ch.timestamp, source=src, line_offset=ch.first_line - 1)
        except StoreError as e:
            raise SourceError(f"{src}: {e}") from None
        errors.extend(rep.errors)
    return store, src, errors


def measured_load(source: str, cluster, state, window: float):
    """Per-node measured load (0..1, :func:`kaiwo_core.monitoring.node_load.node_load`) of
    ``cluster`` from the metrics ``source`` (a replay file, URL or ``.npz`` history, as
    ``--source``), and the warnings (malformed lines, stale or missing series) to show.

    Raises SourceError when the source cannot be read."""
    from kaiwo_core.monitoring.node_load import node_load

    store, _, errors = load_source(source)
    nl = node_load(store, cluster, state, window=window)
    return nl.load, [f"{source}: {e}" for e in errors] + nl.warnings


def _report_errors(cmd: str, errors: list) -> None:
    for e in errors[:MAX_SHOWN_ERRORS]:
        print(f"kaiwo {cmd}: warning: {e}", file=sys.stderr)
    if len(errors) > MAX_SHOWN_ERRORS:
        print(f"kaiwo {cmd}: warning: ... {len(errors) - MAX_SHOWN_ERRORS} more malformed lines skipped",
              file=sys.stderr)


def _load_rules(cmd: str, path: str | None):
    """(RuleSet, path) or raises SourceError for an unreadable file."""
    from kaiwo_core.monitoring.alerts import RuleError, load_rules

    path = path or data_path(EXAMPLE_RULES)
    try:
        rs = load_rules(path if path.endswith((".yaml", ".yml", ".json")) else open(path).read())
    except RuleError as e:
        raise SourceError(str(e)) from None
    except OSError as e:
        raise SourceError(f"{path}: {e.strerror or e}") from None
    for e in rs.errors:
        print(f"kaiwo {cmd}: {path}: {e} (rule skipped)", file=sys.stderr)
    return rs, path


def replay_alerts(store, rules):
    """Evaluate ``rules`` at every scrape time of ``store``; returns (manager, events)."""
    from kaiwo_core.monitoring.alerts import AlertManager

    mgr = AlertManager(rules, store, sinks=[])
    store.pod_info_from_kube_labels()
    events = []
    _, ts = store.ordered_slots()
    for t in ts:
        events.extend(mgr.evaluate(float(t)))
    # Summaries that failed to render with the data (the alerts went out with a fallback text):
    # reported per rule, like the rules refused when loading.
    rules.errors.extend(e for e in mgr.template_errors.values() if e not in rules.errors)
    for e in mgr.template_errors.values():
        print(f"kaiwo: rule {e.rule}: {e.field}: {e.reason}", file=sys.stderr)
    return mgr, events


def _fmt_time(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(ts))


def _alerts_text(events, active) -> str:
    from kaiwo_core.monitoring.efficiency import render_table

    shown = [e for e in events if e.state in ("firing", "resolved")]
    out = []
    if shown:
        out.append(render_table([[_fmt_time(e.timestamp), e.state.upper(), e.severity, e.rule, e.summary]
                                 for e in shown], ["TIME (UTC)", "ALERT", "SEVERITY", "RULE", "SUMMARY"]))
    else:
        out.append("no alert fired")
    if active:
        out.append(render_table([[e.state, e.severity, e.rule, _fmt_time(e.started), e.summary] for e in active],
                                ["ACTIVE", "SEVERITY", "RULE", "SINCE (UTC)", "SUMMARY"]))
    else:
        out.append("no active alerts")
    return "\n\n".join(out)


def _allocations(store, dump: str | None, window: float):
    from kaiwo_core.monitoring.efficiency import Allocations

    if not dump:
        return Allocations.from_store(store, window)
    from kaiwo_core import Snapshot

    from ..dump import DumpError, load_dump

    try:
        objs = load_dump(dump)
    except (OSError, DumpError) as e:  # both name the file already
        raise SourceError(str(e)) from None
    return Allocations.from_snapshot(Snapshot.from_objects(objs))


# ------------------------------------------------------------------------------------ commands

def cmd_monitor(args) -> int:
    from kaiwo_core.monitoring.efficiency import efficiency_report
    from kaiwo_core.monitoring.history import save

    try:
        store, label, errors = load_source(args.source, args.count, args.interval)
        rs = None if args.no_alerts else _load_rules("monitor", args.rules)[0]
        alloc = _allocations(store, args.dump, args.window)
    except SourceError as e:
        print(f"kaiwo monitor: {e}", file=sys.stderr)
        return 2
    _report_errors("monitor", errors)
    if store.latest is None:
        print(f"kaiwo monitor: {label}: no samples", file=sys.stderr)
        return 2
    mgr, events = replay_alerts(store, rs) if rs is not None else (None, [])
    report = efficiency_report(store, alloc, args.window, idle_threshold=args.idle_threshold,
                               idle_for=args.idle_for)
    if args.save:
        save(store, args.save)
    active = mgr.active() if mgr else []
    if args.json:
        doc = {"source": label, "scrapes": store.filled, "series": store.n_series,
               "efficiency": report.to_dict(),
               "alerts": {"rules": len(rs) if rs is not None else 0,
                          "ruleErrors": [e.to_dict() for e in rs.errors] if rs is not None else [],
                          "events": [e.to_dict() for e in events], "active": [e.to_dict() for e in active]},
               "errors": [e.to_dict() for e in errors]}
        json.dump(doc, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(f"{label}: {store.filled} scrapes, {store.n_series} series, "
              f"window {args.window:g}s ending {_fmt_time(store.latest)} UTC\n")
        print(report.tables(None if args.all else 50))
        if mgr is not None:
            print()
            print(_alerts_text(events, active))
    return 1 if rs is not None and rs.errors else 0


def cmd_alerts(args) -> int:
    try:
        rs, path = _load_rules("alerts", args.rules)
    except SourceError as e:
        print(f"kaiwo alerts: {e}", file=sys.stderr)
        return 2
    status = 1 if rs.errors else 0
    if args.check:
        if not args.json:
            print(f"{path}: {len(rs.rules)} valid rules, {len(rs.errors)} invalid")
        else:
            json.dump({"rules": [r.name for r in rs.rules], "ruleErrors": [e.to_dict() for e in rs.errors]},
                      sys.stdout, indent=1)
            sys.stdout.write("\n")
        return status
    try:
        store, label, errors = load_source(args.source, args.count, args.interval)
    except SourceError as e:
        print(f"kaiwo alerts: {e}", file=sys.stderr)
        return 2
    _report_errors("alerts", errors)
    mgr, events = replay_alerts(store, rs)
    status = 1 if rs.errors else 0  # summaries that failed at evaluation count too
    active = mgr.active()
    if args.json:
        json.dump({"source": label, "rules": [r.name for r in rs.rules],
                   "ruleErrors": [e.to_dict() for e in rs.errors],
                   "events": [e.to_dict() for e in events], "active": [e.to_dict() for e in active],
                   "errors": [e.to_dict() for e in errors]}, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(f"{path}: {len(rs.rules)} rules over {label} ({store.filled} scrapes)\n")
        print(_alerts_text(events, active))
    return status


def cmd_recommend(args) -> int:
    from kaiwo_core.monitoring.efficiency import render_table
    from kaiwo_core.monitoring.rightsizing import DECISIONS, DEFAULT_POLICIES, Rightsizer

    try:
        store, label, errors = load_source(args.source, args.count, args.interval)
        alloc = _allocations(store, args.dump, args.window)
    except SourceError as e:
        print(f"kaiwo recommend: {e}", file=sys.stderr)
        return 2
    _report_errors("recommend", errors)
    tuned = {"quantile": args.quantile, "margin": args.margin}
    try:
        rs = Rightsizer({r: replace(p, min_samples=args.min_samples, **(tuned if r in ("cpu", "gpu") else {}))
                         for r, p in DEFAULT_POLICIES.items()})
    except ValueError as e:
        print(f"kaiwo recommend: {e}", file=sys.stderr)
        return 2
    recs = rs.recommend(store, alloc, args.window)
    if args.json:
        json.dump({"source": label, **recs.to_dict(all_pods=args.all)}, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    rows = []
    wanted = range(len(recs.pods)) if args.all else sorted({i for i, _ in recs.changes()})
    for i in wanted:
        for res, rec in recs.by_resource.items():
            code = int(rec.code[i])
            if not args.all and DECISIONS[code] not in ("increase", "decrease", "new"):
                continue
            cur = "-" if rec.current[i] != rec.current[i] else f"{rec.current[i]:g}"
            tgt = "-" if rec.target[i] != rec.target[i] else f"{rec.target[i]:g}"
            rows.append([recs.pods[i], res, cur, tgt, DECISIONS[code], rec.reason(i)])
    print(f"{label}: {len(recs.pods)} pods, window {args.window:g}s "
          "(units: cpu m, memory Mi, gpu milli-GPU per device, gpu_memory Mi per device)\n")
    print(render_table(rows, ["POD", "RESOURCE", "CURRENT", "RECOMMENDED", "DECISION", "REASON"])
          if rows else "no changes recommended")
    return 0


def _source_args(p) -> None:
    p.add_argument("--source", "-s", help="replay file ('# SCRAPE <unix-ts>' before each exposition), "
                   "exporter URL, or .npz history (default: the bundled example)")
    p.add_argument("--count", type=int, default=1, help="scrapes of a URL source (default 1)")
    p.add_argument("--interval", type=_duration, default=15.0,
                   help="time between scrapes of a URL source (default 15s)")
    p.add_argument("--json", action="store_true", help="JSON instead of tables")


def add_commands(sub) -> None:
    """Add ``monitor``, ``alerts`` and ``recommend`` to the ``kaiwo`` subparsers."""
    m = sub.add_parser("monitor", help="efficiency, idle GPUs and alerts from exporter scrapes")
    _source_args(m)
    m.add_argument("--rules", help="alert rules YAML (default: the bundled example rules)")
    m.add_argument("--no-alerts", action="store_true", help="skip alert evaluation")
    m.add_argument("--dump", help="cluster dump (as for 'kaiwo schedule'; - for standard input) giving the "
                   "allocations; default: from kube-state-metrics requests and the exporter's pod labels")
    m.add_argument("--window", type=_duration, default=600.0, help="averaging window (default 10m)")
    m.add_argument("--idle-threshold", type=float, default=5.0,
                   help="GPU activity percent below which a GPU is idle (default 5)")
    m.add_argument("--idle-for", type=_duration, default=600.0,
                   help="how long a GPU must stay below the threshold (default 10m)")
    m.add_argument("--all", action="store_true", help="list every pod (the table shows 50)")
    m.add_argument("--save", help="also write the scrapes to this .npz history file")
    m.set_defaults(func=cmd_monitor)
    a = sub.add_parser("alerts", help="validate alert rules, then evaluate them over scrapes")
    _source_args(a)
    a.add_argument("--rules", "-r", help="alert rules YAML (default: the bundled example rules)")
    a.add_argument("--check", action="store_true", help="only validate the rules")
    a.set_defaults(func=cmd_alerts)
    r = sub.add_parser("recommend", help="right-sizing: request changes from usage history")
    _source_args(r)
    r.add_argument("--dump", help="cluster dump giving the current requests (- for standard input; default: "
                   "from the metrics)")
    r.add_argument("--window", type=_duration, default=3600.0, help="usage history used (default 1h)")
    r.add_argument("--quantile", type=float, default=0.95, help="usage quantile for CPU and GPU (default 0.95)")
    r.add_argument("--margin", type=float, default=0.15, help="headroom over it (default 0.15)")
    r.add_argument("--min-samples", type=int, default=10, help="samples needed per pod (default 10)")
    r.add_argument("--all", action="store_true", help="every pod and resource, not only changes")
    r.set_defaults(func=cmd_recommend)
