"""The scheduler configuration file, ``KaiwoSchedulerConfiguration``: versioned like kube-scheduler's.

.. code-block:: yaml

    apiVersion: kaiwo.ai/v1alpha1
    kind: KaiwoSchedulerConfiguration
    strategy: spread
    plugins: [{name: avoid-node, args: {node: gpu-07}}, {name: gang-topology, args: {label: example.com/rack}}]
    load: {allocationWeight: 1, loadWeight: 2}
    ordering: {gpuDemandFactor: 5}
    preemption: {maxPreemptors: 64, checkResources: all}
    reservation: {starvation: 15m}
    controller: {period: 2s}

:func:`decode` turns such a mapping (YAML or JSON, already parsed) into a
:class:`SchedulerConfiguration` made of the dataclasses the cycle takes (:class:`OrderingConfig`,
:class:`PreemptionConfig`, :class:`ReservationConfig`) -- or raises a :class:`ConfigError` listing
*every* problem of the file, each with its path: ``preemption.maxPreemptors: -3: must be >= 0``,
``ordering.ageBoost: unknown key (did you mean ageBoostMax?)``. Whatever the file holds, decoding
never fails otherwise. Keys left out keep their defaults, which are the cycle's own defaults.

A section is a :class:`Section` in :data:`SECTIONS`: its dataclass and one :class:`Setting` per key
(file name, attribute, reader, one line of documentation). To add one: write the dataclass, add an
attribute of that name to :class:`SchedulerConfiguration` and an entry to :data:`SECTIONS`;
decoding, ``kaiwo config default`` and the tests that every default round-trips follow from it.

Reading the file (bounded) is :func:`kaiwo.dump.load_config`; this module does no I/O.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from ..model.durations import parse_duration
from ..model.errors import show
from ..model.fields import did_you_mean
from ..model.limits import INT32_MAX, INT32_MIN, MAX_DEVICES
from .. import plugins as plugin_registry
from ..plugins import Pipeline, PluginError
from . import filters  # importing it registers the built-in plugins a file may name
from .fairness import OrderingConfig
from .preemption import CHECK_RESOURCES, PreemptionConfig
from .reservations import ReservationConfig

#: Plugins every cycle has already (the filters; ``reservations``, which the cycle configures itself).
BUILT_IN = (*filters.DEFAULT_PLUGINS, "reservations")
API_VERSION = "kaiwo.ai/v1alpha1"
KIND = "KaiwoSchedulerConfiguration"
#: Plugins a file may list: enough for any real pipeline; a hostile file cannot make decoding
#: build thousands of plugins.
MAX_PLUGINS = 64
#: Errors a message lists (the rest are counted): a file of 10,000 bad keys must not flood a log.
MAX_ERRORS_SHOWN = 200


class ConfigError(ValueError):
    """A configuration that cannot be used: ``errors`` lists every problem, each with its path."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        shown = self.errors[:MAX_ERRORS_SHOWN]
        if len(self.errors) > len(shown):
            shown.append(f"... and {len(self.errors) - len(shown)} more errors")
        super().__init__("\n".join(shown))


@dataclass(frozen=True)
class ControllerSettings:
    """What ``kaiwo controller`` takes from the file (the rest -- scheduler name, namespaces,
    leader election, metrics -- are flags of the deployment). All apply at the next cycle when the
    controller reloads the file."""

    period: float = 1.0           #: seconds between two cycles at the latest
    resync_period: float = 300.0  #: seconds between relists of everything (0: never)
    assume_ttl: float = 30.0      #: seconds a binding may stay unconfirmed before it is checked
    event_interval: float = 60.0  #: least seconds between two FailedScheduling events of a pod


@dataclass(frozen=True)
class LoadSettings:
    """The ``load`` strategy's weights (used only when the strategy is ``load``): a node scores
    -(allocation_weight x its allocation after placement) - load_weight x its measured load."""

    allocation_weight: float = 1.0
    load_weight: float = 1.0

    def plugin_args(self) -> dict:
        return {"alloc_weight": self.allocation_weight, "load_weight": self.load_weight}


# --------------------------------------------------------------------------------- readers
# A reader returns the value to store or raises ValueError with the reason (the path and the
# value are added by the caller).

def boolean(value) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _within(value, lo, hi):
    for bad, op, bound in ((value < lo, ">=", lo), (value > hi, "<=", hi)):
        if bad:
            raise ValueError(f"must be {op} {bound:g}" if isinstance(bound, float) else f"must be {op} {bound}")
    return value


def integer(lo: int, hi: int) -> Callable[[Any], int]:
    def read(value) -> int:
        if isinstance(value, float) and math.isfinite(value) and value == int(value):
            value = int(value)  # JSON has one number type
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be an integer")
        return _within(value, lo, hi)
    return read


def number(lo: float, hi: float) -> Callable[[Any], float]:
    def read(value) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("must be a number")
        try:
            v = float(value)
        except OverflowError:  # an integer too large for a float
            v = math.inf
        if not math.isfinite(v):
            raise ValueError("must be a finite number")
        return _within(v, lo, hi)
    return read


def duration(positive: bool = False) -> Callable[[Any], float]:
    """``10m``, ``1h30m``, ``500ms`` or a number of seconds."""
    def read(value) -> float:
        seconds = parse_duration(value)
        if positive and seconds <= 0:
            raise ValueError("must be longer than 0")
        return seconds
    return read


def choice(*names: str) -> Callable[[Any], str]:
    def read(value) -> str:
        if value not in names or not isinstance(value, str):
            raise ValueError(f"must be one of {', '.join(names)}{_suggest(value, names)}")
        return value
    return read


def strategy(value) -> str:
    """A registered strategy plugin (``binpack``, ``spread``, ``frag``, the FGD paper's ...)."""
    names = strategy_names()
    if not isinstance(value, str) or value not in names:
        raise ValueError(f"not a strategy plugin{_suggest(value, names)} (strategies: {', '.join(names)})")
    return value


def strategy_names() -> list[str]:
    return [n for n in plugin_registry.available()
            if plugin_registry.plugin_class(n).strategy is not None]


def format_duration(seconds: float) -> str:
    """Seconds as the shortest duration string that reads back the same (``600`` -> ``10m``)."""
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds * 1000:g}ms" if seconds else "0s"


@dataclass(frozen=True)
class Setting:
    """One key of a section: its name in the file, the dataclass attribute, how it is read, and
    (for ``kaiwo config default``) one line of documentation and how its value is written."""

    key: str
    attr: str
    read: Callable[[Any], Any]
    doc: str
    write: Callable[[Any], Any] = lambda v: v


@dataclass(frozen=True)
class Section:
    cls: type
    doc: str
    settings: tuple


def _durations(*args) -> Setting:
    return Setting(*args, write=format_duration)


SECTIONS: dict[str, Section] = {
    "ordering": Section(OrderingConfig, "the order of pending pods within a queue: effective priority = "
                        "PriorityClass value + age boost + gpuDemandFactor x GPUs requested", (
        Setting("ageBoostPerHour", "age_boost_per_hour", number(0, 1e9), "priority added per hour of waiting"),
        Setting("ageBoostMax", "age_boost_max", number(0, 1e9), "most priority waiting can add"),
        Setting("gpuDemandFactor", "gpu_demand_factor", number(-1e9, 1e9),
                "priority per GPU requested: > 0 favours large jobs, < 0 small ones"),
    )),
    "preemption": Section(PreemptionConfig, "reclaim across queues and preemption within a queue", (
        Setting("enabled", "enabled", boolean, "false: never evict"),
        Setting("nonpreemptiblePriority", "nonpreemptible_priority", integer(INT32_MIN, INT32_MAX),
                "running pods of this priority or higher are never evicted"),
        Setting("checkResources", "check_resources", choice(*CHECK_RESOURCES),
                "resources the queue rules judge: quota (those some queue has a quota of) or all"),
        Setting("maxPreemptors", "max_preemptors", integer(0, 1_000_000),
                "unplaced pods that may look for victims in one cycle"),
    )),
    "reservation": Section(ReservationConfig, "automatic reservations for gangs and multi-GPU pods that "
                           "keep waiting", (
        _durations("starvation", "starvation", duration(), "waiting time before Kaiwo reserves (0: never)"),
        _durations("ttl", "ttl", duration(positive=True), "how long an automatic reservation holds"),
        Setting("minGpus", "min_gpus", integer(1, MAX_DEVICES), "smallest pod (in GPUs) reserved for"),
        Setting("maxAutomatic", "max_automatic", integer(0, 100_000), "new automatic reservations per cycle"),
        Setting("maxNodeFraction", "max_node_fraction", number(0, 1),
                "share of the nodes automatic reservations may hold"),
    )),
    "load": Section(LoadSettings, "the load strategy (strategy: load): measured load from kaiwo schedule "
                    "--metrics; nodes without metrics count as unloaded", (
        Setting("allocationWeight", "allocation_weight", number(0, 1e6),
                "weight of the node's GPU/CPU allocation after placement"),
        Setting("loadWeight", "load_weight", number(0, 1e6),
                "weight of the node's measured load (0..1); 0: allocation only, as spread"),
    )),
    "controller": Section(ControllerSettings, "kaiwo controller only (the deployment's flags win)", (
        _durations("period", "period", duration(positive=True), "longest time between two cycles"),
        _durations("resyncPeriod", "resync_period", duration(),
                   "time between two relists that repair what the watches missed (0: never)"),
        _durations("assumeTtl", "assume_ttl", duration(positive=True),
                   "how long a binding may stay unconfirmed before it is checked"),
        _durations("eventInterval", "event_interval", duration(),
                   "least time between two FailedScheduling Events of one pod"),
    )),
}


@dataclass(frozen=True)
class SchedulerConfiguration:
    """A decoded ``KaiwoSchedulerConfiguration``; the default instance is what the cycle does with
    no file at all."""

    strategy: str = "binpack"
    #: extra placement plugins, in order, as (name, arguments)
    plugins: tuple = ()
    ordering: OrderingConfig = field(default_factory=OrderingConfig)
    preemption: PreemptionConfig = field(default_factory=PreemptionConfig)
    reservation: ReservationConfig = field(default_factory=ReservationConfig)
    load: LoadSettings = field(default_factory=LoadSettings)
    controller: ControllerSettings = field(default_factory=ControllerSettings)

    def pipeline(self, strategy: str | None = None, node_load: dict | None = None) -> Pipeline:
        """The built-in filters, the file's plugins and the strategy (``strategy`` overrides the
        file's), started. ``node_load``: measured load per node name, for the ``load`` strategy."""
        name = strategy or self.strategy
        strat = (name, {**self.load.plugin_args(), "load": node_load}) if name == "load" else name
        return Pipeline([*filters.DEFAULT_PLUGINS, *((n, dict(a)) for n, a in self.plugins), strat])

    def schedule_kwargs(self, strategy: str | None = None, node_load: dict | None = None) -> dict:
        """Keyword arguments of :func:`kaiwo_core.schedule` for this configuration."""
        return {"pipeline": self.pipeline(strategy, node_load), "ordering": self.ordering,
                "preempting": self.preemption, "reserving": self.reservation}


_TOP = ("apiVersion", "kind", "strategy", "plugins", *SECTIONS)


def _suggest(value, names) -> str:
    return did_you_mean(value, list(names)) if isinstance(value, str) else ""


def _unknown(errors: list, path: str, mapping: dict, known) -> None:
    for key in mapping:
        if key not in known:
            name = key if isinstance(key, str) else show(key)
            hint = _suggest(key, known) or f" (known: {', '.join(known) or 'none'})"
            errors.append(f"{path + '.' if path else ''}{name}: unknown key{hint}")


def _merge(doc, overrides: dict | None):
    """``doc`` with ``overrides`` (``{"strategy": "spread", "controller.period": 2}``: dotted file
    keys, as command-line flags give them) set; a part of ``doc`` that is not a map is left as it
    is (its error is reported)."""
    if not overrides or not isinstance(doc, dict):
        return doc
    out = dict(doc)
    for dotted, value in overrides.items():
        *parents, key = dotted.split(".")
        node = out
        for p in parents:
            child = node.get(p)
            if child is None:
                child = {}
            if not isinstance(child, dict):
                break
            node[p] = child = dict(child)
            node = child
        else:
            node[key] = value
    return out


def decode(doc, overrides: dict | None = None) -> SchedulerConfiguration:
    """A :class:`SchedulerConfiguration` from a parsed file (``overrides``: see :func:`_merge`).

    Raises
    ------
    ConfigError
        Listing every problem, each as ``path: value: reason``.
    """
    doc = _merge(doc, overrides)
    if not isinstance(doc, dict):
        raise ConfigError([f"the file must be a map (a {KIND}), not "
                           f"{'empty' if doc is None else 'a ' + type(doc).__name__}"])
    errors: list[str] = []
    _unknown(errors, "", doc, _TOP)
    if doc.get("apiVersion") != API_VERSION:
        errors.append(f"apiVersion: {show(doc.get('apiVersion')) + ': ' if 'apiVersion' in doc else ''}"
                      f"must be {API_VERSION}")
    if doc.get("kind") != KIND:
        errors.append(f"kind: {show(doc.get('kind')) + ': ' if 'kind' in doc else ''}must be {KIND}")
    values: dict = {}
    if "strategy" in doc:
        values["strategy"] = _read(errors, "strategy", doc["strategy"], strategy)
    if "plugins" in doc:
        values["plugins"] = _plugins(errors, doc["plugins"])
    for name, section in SECTIONS.items():
        if name in doc:
            values[name] = _section(errors, name, section, doc[name])
    if errors:
        raise ConfigError(errors)
    return SchedulerConfiguration(**values)


_BAD = object()


def _read(errors: list, path: str, value, reader):
    try:
        return reader(value)
    except ValueError as e:
        errors.append(f"{path}: {show(value)}: {e}")
        return _BAD


def _section(errors: list, name: str, section: Section, value):
    if value is None:
        value = {}
    if not isinstance(value, dict):
        errors.append(f"{name}: {show(value)}: must be a map, not a {type(value).__name__}")
        return None
    by_key = {s.key: s for s in section.settings}
    _unknown(errors, name, value, list(by_key))
    kwargs, before = {}, len(errors)
    for key, v in value.items():
        if key in by_key:
            kwargs[by_key[key].attr] = _read(errors, f"{name}.{key}", v, by_key[key].read)
    if len(errors) > before:
        return None
    try:  # the dataclass's own checks, which the readers should already have made
        return section.cls(**kwargs)
    except (TypeError, ValueError) as e:
        errors.append(f"{name}: {e}")
        return None


def _plugins(errors: list, value) -> tuple:
    if not isinstance(value, list):
        errors.append(f"plugins: {show(value)}: must be a list of {{name, args}}, not a {type(value).__name__}")
        return ()
    if len(value) > MAX_PLUGINS:
        errors.append(f"plugins: {len(value)} entries: must be at most {MAX_PLUGINS}")
        return ()
    out, names = [], plugin_registry.available()
    for i, entry in enumerate(value):
        path = f"plugins[{i}]"
        if not isinstance(entry, dict):
            errors.append(f"{path}: {show(entry)}: must be a map {{name, args}}")
            continue
        _unknown(errors, path, entry, ["name", "args"])
        name, args = entry.get("name"), entry.get("args")
        args = {} if args is None else args
        if not isinstance(args, dict):
            errors.append(f"{path}.args: {show(args)}: must be a map")
            continue
        if name is None:
            errors.append(f"{path}.name: missing (the plugin's name)")
            continue
        if isinstance(name, str) and name in plugin_registry.BROKEN:
            errors.append(f"{path}.name: {plugin_registry.BROKEN[name]}")
            continue
        if not isinstance(name, str) or name not in names:
            errors.append(f"{path}.name: {show(name)}: no such plugin{_suggest(name, names)} "
                          "(kaiwo plugins lists them)")
            continue
        cls = plugin_registry.plugin_class(name)
        if cls.strategy is not None:
            errors.append(f"{path}.name: {name!r} is a strategy: choose it with strategy:")
            continue
        if name in BUILT_IN:
            errors.append(f"{path}.name: {name!r} is built in and always on")
            continue
        before = len(errors)
        _unknown(errors, f"{path}.args", args, list(cls.config_schema))
        if len(errors) == before:
            try:
                cls(**args)  # the plugin's own checks (types); started only in a pipeline
            except PluginError as e:
                errors.append(f"{path}.args: {e}")
                continue
            except Exception as e:  # noqa: BLE001 - a third-party plugin's checks may raise anything
                errors.append(f"{path}.args: plugin {name!r} refused them: {type(e).__name__}: {show(str(e))[1:-1]}")
                continue
            out.append((name, dict(args)))
    return tuple(out)


# ------------------------------------------------------------------------- the default file

def render_default() -> str:
    """The full default configuration as commented YAML (``kaiwo config default``): every key
    with its default value; :func:`decode` of it gives ``SchedulerConfiguration()``."""
    default = SchedulerConfiguration()
    lines = [f"apiVersion: {API_VERSION}", f"kind: {KIND}",
             f"# node scoring: {', '.join(strategy_names())} (kaiwo plugins describes them)",
             f"strategy: {default.strategy}",
             "# extra placement plugins (built in, or a package's kaiwo.plugins entry point), in order:",
             "#   - name: <plugin>",
             "#     args: {<key>: <value>}",
             "plugins: []"]
    for name, section in SECTIONS.items():
        lines.append(f"# {section.doc}")
        lines.append(f"{name}:")
        values = getattr(default, name)
        width = max(len(s.key) + len(str(s.write(getattr(values, s.attr)))) for s in section.settings) + 4
        for s in section.settings:
            v = s.write(getattr(values, s.attr))
            text = "true" if v is True else "false" if v is False else str(v)
            lines.append(f"  {s.key}: {text}".ljust(width + 2) + f"  # {s.doc}")
    return "\n".join(lines) + "\n"

