"""What every ``kaiwo`` command shares: ``--version``, ``-v``/``--log-level``, the exit statuses
(in every ``--help``), JSON or YAML output, and help text without reStructuredText markup.

:func:`finish` walks the finished parser tree once, so that a command added anywhere gets these
without repeating them.
"""
from __future__ import annotations

import argparse
import json
import logging
import re
import sys

#: The exit statuses of every command (README "Exit status"); a command's own description may add one.
EXIT_STATUS = ("exit status: 0 success; 1 findings (kaiwo explain: pod not in the dump; schedule "
               "--fail-on-rejected: some pod rejected; config validate: invalid file; monitor/alerts: "
               "invalid rules; controller --once: some binding failed); 2 usage or input error (bad "
               "option, unreadable or invalid file); 3 controller --once could not sync or take the lease "
               "in time; 141 standard output closed early (a pipe into head)")

LOG_LEVELS = ("debug", "info", "warning", "error")

# :role:`~pkg.mod.name` -> name (the ~ keeps the last part, as Sphinx shows it), :role:`x` -> x,
# ``literal`` -> literal.
_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`(~?)([^`<]*?)(?:\s*<[^>]*>)?`")
_LITERAL = re.compile(r"``([^`]+)``")
_LEAD = re.compile(r"^(\s*)``([^`]+)``(\s)")


def plain(text: str | None) -> str | None:
    """reStructuredText inline markup (module docstrings are reused as descriptions) as plain text."""
    if not text:
        return text
    text = _ROLE.sub(lambda m: m.group(2).rsplit(".", 1)[-1] if m.group(1) else m.group(2), text)
    return _LITERAL.sub(r"\1", text)


class Formatter(argparse.HelpFormatter):
    """Plain text; paragraphs are wrapped, but a paragraph laid out as a table (a line with a run of
    two spaces inside it, or lines starting with "kaiwo ") keeps its lines."""

    def _fill_text(self, text, width, indent):
        out = []
        for para in re.split(r"\n\s*\n", text.strip("\n")):
            lines = para.splitlines()
            if any("  " in ln.strip() or ln.lstrip().startswith(("``kaiwo ", "kaiwo ", "* ")) for ln in lines):
                # A literal opening a table row loses its four backquotes to spaces after it, so
                # the second column stays aligned.
                out.append("\n".join(indent + plain(_LEAD.sub(r"\1\2\3    ", ln)) for ln in lines))
            else:
                out.append(super()._fill_text(plain(para), width, indent))
        return "\n\n".join(out)

    def _get_help_string(self, action):
        return plain(super()._get_help_string(action))


def version() -> str:
    """The installed package's version (its metadata), as ``kaiwo --version`` prints it."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("kaiwo")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown (not installed)"


def subparsers(parser: argparse.ArgumentParser):
    """``parser`` and every parser below it, depth first."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases share a parser
                yield from subparsers(child)


def _has(parser, option: str) -> bool:
    return option in parser._option_string_actions


def finish(root: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give every parser of the tree the plain-text formatter, the exit statuses, ``-v`` and
    ``--log-level`` (a command with its own ``--log-level`` keeps it); ``--version`` on the root."""
    root.add_argument("--version", action="version", version=f"kaiwo {version()}",
                      help="print the installed version and exit")
    for p in subparsers(root):
        p.formatter_class = Formatter
        if p.epilog is None:
            p.epilog = EXIT_STATUS
        if p is root or any(isinstance(a, argparse._SubParsersAction) for a in p._actions):
            continue  # options belong to the commands themselves
        log = p.add_argument_group("logging")
        if not _has(p, "--log-level"):
            log.add_argument("--log-level", choices=LOG_LEVELS, default=None,
                             help="messages of this level and above on standard error (default warning)")
        if not _has(p, "-v"):
            log.add_argument("-v", "--verbose", action="count", default=0,
                             help="more messages: -v info, -vv debug (wins over --log-level)")
    return root


def log_level(args) -> str:
    """The level the options ask for (``-v`` wins over ``--log-level``)."""
    verbose = getattr(args, "verbose", 0)
    if verbose:
        return "info" if verbose == 1 else "debug"
    return getattr(args, "log_level", None) or "warning"


def setup_logging(args) -> None:
    """Configure the root logger as the options say; a command that configures logging itself
    (the controller, with timestamps) reads ``args.log_level`` and is left to do so."""
    args.log_level = log_level(args)
    if getattr(args, "own_logging", False):
        return
    root = logging.getLogger()
    if not root.handlers:  # an embedding program's (or a test's) own handlers stay as they are
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("kaiwo: %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(getattr(logging, args.log_level.upper()))


class _Stderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (``main`` may run more than once in one
    process, each time with other streams, as under pytest)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):  # StreamHandler.__init__ sets it; the property decides
        pass


def emit(doc, fmt: str = "json", compact: bool = False, stream=None) -> None:
    """Write ``doc`` as JSON (indented unless ``compact``) or YAML (block style, keys in the
    document's order) to ``stream`` (default standard output)."""
    stream = stream or sys.stdout
    if fmt == "yaml":
        import yaml
        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
        yaml.dump(doc, stream, Dumper=dumper, sort_keys=False, default_flow_style=False, allow_unicode=True)
        return
    json.dump(doc, stream, indent=None if compact else 1)
    stream.write("\n")
