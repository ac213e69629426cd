"""``kaiwo controller``: run Kaiwo as the Kubernetes scheduler of pods with ``schedulerName: kaiwo``.

``kaiwo controller``                         in a pod: the service account; elsewhere: ~/.kube/config
``kaiwo controller --kubeconfig PATH``       a given kubeconfig (``--context`` to pick one)
``kaiwo controller --once``                  sync, take the lease, run one cycle, wait, exit
``kaiwo controller --config FILE``           a KaiwoSchedulerConfiguration, reloaded when it changes

Exit status: 0 on a clean stop (SIGTERM/SIGINT) or a successful ``--once``; 1 when ``--once``
could not carry out some bindings; 2 when the Kubernetes configuration or the ``--config`` file
cannot be loaded; 3 when ``--once`` could not sync or acquire the lease in time.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from . import config
from .usage import emit

#: Flags that are also keys of the configuration file (argparse dest -> dotted file key): when
#: given, they override the file.
FILE_FLAGS = {"strategy": "strategy", "period": "controller.period", "resync_period": "controller.resyncPeriod",
              "assume_ttl": "controller.assumeTtl", "event_interval": "controller.eventInterval"}


def _duration(text: str) -> float:
    """``1s``, ``500ms``, ``2m``, ``1h30m`` or plain seconds."""
    from kaiwo_core.model.durations import parse_duration

    try:
        value = parse_duration(float(text) if text.replace(".", "", 1).isdigit() else text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r}: {e}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be positive")
    return value


def _namespaces(values) -> tuple:
    out = []
    for v in values or []:
        out.extend(x.strip() for x in v.split(",") if x.strip())
    return tuple(dict.fromkeys(out))


def cmd_controller(args) -> int:
    from kubernetes.config import ConfigException

    from kaiwo_core.scheduling.config import ConfigError

    from ..controller import Controller, ControllerConfig, RetryPolicy, make_api_client
    from ..dump import DumpError
    from ..warmup import seed_cache

    # Flags given explicitly win over the file, in every version of it the controller reloads.
    overrides = {key: getattr(args, dest) for dest, key in FILE_FLAGS.items() if getattr(args, dest) is not None}
    scheduling = config.load("controller", args.config, overrides)
    if scheduling is None:
        return 2
    logging.basicConfig(level=getattr(logging, args.log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:  # an image's pre-compiled kernels, before anything could load a kernel
        seeded = seed_cache()
        if seeded:
            logging.getLogger("kaiwo.controller").info("copied %d pre-compiled kernel cache files", seeded)
    except OSError as e:  # a cold cache is slower, never wrong
        logging.getLogger("kaiwo.controller").warning("cannot seed the kernel cache: %s", e)
    try:
        api_client = make_api_client(args.kubeconfig, True if args.in_cluster else None, args.context,
                                     pool_size=args.concurrency + 16)
    except (ConfigException, OSError, TypeError, ValueError) as e:
        print(f"kaiwo controller: cannot load the Kubernetes configuration: {e}", file=sys.stderr)
        return 2
    s = scheduling.controller
    kwargs = dict(scheduler_name=args.scheduler_name, period=s.period, namespaces=_namespaces(args.namespace),
                  scheduling=scheduling, config_file=args.config, config_overrides=overrides,
                  concurrency=args.concurrency, request_timeout=args.request_timeout,
                  assume_ttl=s.assume_ttl, leader_election=not args.no_leader_election,
                  lease_name=args.lease_name, metrics_port=None if args.metrics_port < 0 else args.metrics_port,
                  metrics_host=args.metrics_bind_address,
                  pod_event_interval=s.event_interval, resync_period=s.resync_period,
                  retry=RetryPolicy(deadline=args.request_timeout * 4))
    if args.lease_namespace:
        kwargs["lease_namespace"] = args.lease_namespace
    if args.identity:
        kwargs["identity"] = args.identity
    try:
        cfg = ControllerConfig(**kwargs)
    except ValueError as e:
        print(f"kaiwo controller: {e}", file=sys.stderr)
        return 2
    try:
        controller = Controller(api_client, cfg)
    except (OSError, DumpError, ConfigError) as e:  # the file changed since it was checked above
        print(f"kaiwo controller: {args.config}: {e}", file=sys.stderr)
        return 2
    if args.once:
        try:
            report = controller.run_once(timeout=args.sync_timeout)
        except TimeoutError as e:
            print(f"kaiwo controller --once: {e}", file=sys.stderr)
            controller.stop()
            return 3
        controller.stop()
        results = controller.binder.stats.results
        failed = sum(n for r, n in results.items() if r not in ("bound", "already-bound", "evicted", "gone"))
        summary = {"bindings": report.bindings, "results": results, "pending": report.pending,
                   "rejected": report.rejected, "preemptions": report.preemptions,
                   "createdPods": report.created_pods, "cycleSeconds": round(report.seconds, 4)}
        if args.output != "text":
            emit(summary, args.output, compact=True)
        else:
            print(f"{report.bindings} bindings ({', '.join(f'{n} {r}' for r, n in sorted(results.items())) or 'none'}), "
                  f"{report.pending} pending, {report.rejected} rejected, {report.preemptions} preemptions, "
                  f"{report.created_pods} pods created for KaiwoJobs; cycle {report.seconds * 1e3:.1f} ms")
        return 1 if failed else 0
    done = threading.Event()

    def _terminate(signum, frame):
        logging.getLogger("kaiwo.controller").info("signal %d: stopping", signum)
        done.set()
        controller.stop_event.set()

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    controller.start_background()
    if controller.server is not None:
        logging.getLogger("kaiwo.controller").info(
            "serving /metrics, /healthz, /readyz on port %d", controller.server.port)
    done.wait()
    controller.stop()
    return 0


def add_commands(sub) -> None:
    """Register ``kaiwo controller`` on the ``kaiwo`` sub-command parser."""
    c = sub.add_parser("controller", help="run as the Kubernetes scheduler of pods with schedulerName kaiwo",
                       description=__doc__.split("\n\n", 1)[0])
    where = c.add_mutually_exclusive_group()
    where.add_argument("--kubeconfig", metavar="PATH", help="kubeconfig file (default: $KUBECONFIG or "
                       "~/.kube/config; in a pod: the service account)")
    where.add_argument("--in-cluster", action="store_true", help="use the pod's service account")
    c.add_argument("--context", help="kubeconfig context (default: the current one)")
    config.add_config_flag(c, "; reloaded when it changes (a bad version is refused and logged, the "
                              "previous one kept)")
    c.add_argument("--period", type=_duration, metavar="DURATION",
                   help="longest time between two cycles (default 1s; changes trigger one sooner)")
    c.add_argument("--namespace", action="append", metavar="NS",
                   help="schedule pending pods and KaiwoJobs of this namespace only (repeatable or comma "
                        "list; default: all namespaces); pods of every namespace are still watched and "
                        "charged, since they use the same nodes")
    c.add_argument("--metrics-port", type=int, default=8080,
                   help="port of /metrics, /healthz and /readyz (default 8080; -1: no server)")
    c.add_argument("--metrics-bind-address", default="0.0.0.0", metavar="HOST",
                   help="address the metrics/probe server listens on (default 0.0.0.0: every IPv4 "
                        "interface, as Prometheus and the kubelet's probes reach the pod IP; 127.0.0.1 "
                        "keeps it local, :: for IPv6)")
    c.add_argument("--lease-name", default="kaiwo-controller", help="leader-election Lease (default kaiwo-controller)")
    c.add_argument("--lease-namespace", help="namespace of the Lease (default: the pod's namespace, "
                   "else kaiwo-system)")
    c.add_argument("--no-leader-election", action="store_true",
                   help="schedule without a Lease (only with a single replica)")
    c.add_argument("--identity", help="leader-election identity (default: $POD_NAME or host-pid)")
    c.add_argument("--once", action="store_true", help="one cycle, wait for its bindings, then exit")
    c.add_argument("--output", "-o", choices=("text", "json", "yaml"), default="text",
                   help="--once summary format (default text)")
    c.add_argument("--scheduler-name", default="kaiwo", help="pods with this schedulerName are Kaiwo's")
    c.add_argument("--strategy", choices=("binpack", "spread", "frag"), help="node scoring (default binpack)")
    c.add_argument("--concurrency", type=int, default=16, help="bindings in flight at once (default 16)")
    c.add_argument("--request-timeout", type=_duration, default=30.0, metavar="DURATION",
                   help="timeout of one API request (default 30s)")
    c.add_argument("--assume-ttl", type=_duration, metavar="DURATION",
                   help="how long a binding may stay unconfirmed by the watch before it is checked "
                        "(default 30s)")
    c.add_argument("--event-interval", type=_duration, metavar="DURATION",
                   help="least time between two FailedScheduling events of one pod (default 60s)")
    c.add_argument("--resync-period", type=_duration, metavar="DURATION",
                   help="time between two relists of everything, which repair what a watch missed and "
                        "check every bound pod's GPU ConfigMap (default 5m; a new leader relists anyway)")
    c.add_argument("--sync-timeout", type=_duration, default=60.0, metavar="DURATION",
                   help="--once: time allowed to sync the caches and take the lease (default 60s)")
    c.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info",
                   help="log messages of this level and above, with timestamps, on standard error (default info)")
    c.set_defaults(func=cmd_controller, own_logging=True)  # with timestamps, at --log-level (default info)
