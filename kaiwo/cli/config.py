"""``kaiwo config``: the scheduler configuration file (``KaiwoSchedulerConfiguration``).

``kaiwo config default [-o FILE]``  the full default configuration, commented: a file to start from
``kaiwo config validate FILE``      every error of FILE with its path (exit 1), or a summary (exit 0)

``kaiwo schedule``, ``kaiwo simulate`` and ``kaiwo controller`` take such a file with ``--config
FILE``; flags given on the command line win over it (:func:`load`).
"""
from __future__ import annotations

import sys


def load(command: str, path: str | None, overrides: dict | None = None):
    """The configuration of ``--config`` (defaults without one) with ``overrides`` (dotted file
    keys -> values of the flags given explicitly), or None after printing why it cannot be used."""
    from kaiwo_core.scheduling.config import ConfigError

    from ..dump import DumpError, load_config

    try:
        return load_config(path, overrides)
    except (OSError, DumpError) as e:
        print(f"kaiwo {command}: cannot read the configuration: {e}", file=sys.stderr)
    except ConfigError as e:
        print(f"kaiwo {command}: {path}: invalid configuration ({len(e.errors)} errors):", file=sys.stderr)
        for line in str(e).splitlines():
            print(f"  {line}", file=sys.stderr)
    return None


def cmd_default(args) -> int:
    from kaiwo_core.scheduling.config import render_default

    if args.output == "-":
        sys.stdout.write(render_default())
        return 0
    try:
        with open(args.output, "x") as f:  # never overwrites a file someone edited
            f.write(render_default())
    except OSError as e:
        print(f"kaiwo config default: {e}", file=sys.stderr)
        return 2
    return 0


def cmd_validate(args) -> int:
    from kaiwo_core.scheduling.config import ConfigError

    from ..dump import DumpError, load_config

    try:
        cfg = load_config(args.file)
    except (OSError, DumpError) as e:
        print(f"kaiwo config validate: {e}", file=sys.stderr)
        return 2
    except ConfigError as e:
        print(f"{args.file}: {len(e.errors)} error{'s' if len(e.errors) > 1 else ''}", file=sys.stderr)
        for line in str(e).splitlines():
            print(f"  {line}", file=sys.stderr)
        return 1
    plugins = ", ".join(name for name, _ in cfg.plugins) or "none"
    print(f"{args.file}: valid (strategy {cfg.strategy}, plugins: {plugins}, preemption "
          f"{'on' if cfg.preemption.enabled else 'off'})")
    return 0


def add_commands(sub) -> None:
    """Register ``kaiwo config`` on the ``kaiwo`` sub-command parser."""
    c = sub.add_parser("config", help="the scheduler configuration file (KaiwoSchedulerConfiguration)",
                       description=__doc__.split("\n\n", 1)[0])
    csub = c.add_subparsers(dest="config_command", required=True)
    d = csub.add_parser("default", help="print the full default configuration (commented YAML)")
    d.add_argument("--output", "-o", default="-", metavar="FILE",
                   help="write it to FILE, which must not exist yet (default: standard output)")
    d.set_defaults(func=cmd_default)
    v = csub.add_parser("validate", help="check a configuration file; list every error with its path",
                        description="Exit status: 0 valid, 1 invalid (every error listed), 2 unreadable.")
    v.add_argument("file", help="YAML or JSON KaiwoSchedulerConfiguration")
    v.set_defaults(func=cmd_validate)


def add_config_flag(parser, more: str = "") -> None:
    parser.add_argument("--config", metavar="FILE",
                        help="a KaiwoSchedulerConfiguration (kaiwo config default prints one); flags "
                             f"given here win over it{more}")
