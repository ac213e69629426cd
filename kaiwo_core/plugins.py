"""Plugin framework: how placement (and later queues, simulation, monitoring) is assembled.

A plugin is a class registered by name (with :func:`register`, or by a package through the
``kaiwo.plugins`` entry point group). It has a lifecycle -- ``configure`` (validated against its
``config_schema``), ``start``, per-cycle hooks, ``stop`` -- and contributes *vectorised* pieces for
the whole batch, never a Python call per pod per node:

``filter(ctx)``  -> bool/uint8 array [C, N]: may pods of constraint class c go to node n?
``score(ctx)``   -> float64 array [C, N] (or [N]): added to the strategy's node score.
``order_key(ctx)`` -> array [P]: extra sort key for the batch (lower first).
``kernel_args(ctx)`` -> dict: extra batch keys for the placement kernel (a strategy's seed or
target workload, the reservations' held devices), built after the class mask.

Exactly one *strategy* plugin (``binpack``, ``spread``, ``frag``) picks the compiled scoring
function. The built-in resource filters (CPU, memory, pods, GPU share/memory/XCDs) and the strategy
scores run inside the C++ kernel; the built-in label/taint/model filters below are numpy over
constraint classes (a cluster has few distinct constraints, so C is small).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, ClassVar

import numpy as np

ENTRY_POINT_GROUP = "kaiwo.plugins"


class PluginError(ValueError):
    """Unknown plugin, bad configuration, or a hook that returned the wrong shape."""


@dataclass
class CycleContext:
    """What hooks see in one cycle: the cluster, its free state, the batch and the classes."""

    cluster: Any
    state: Any
    batch: Any
    extra: dict = field(default_factory=dict)  #: scratch space plugins may share

    @property
    def constraints(self) -> list:
        return self.batch.constraints

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.batch.constraints), self.cluster.n_nodes


class Plugin:
    """Base class. Subclasses set ``name`` and optionally ``config_schema``: a dict
    ``key -> (type, default, description)``; ``configure`` checks types and fills defaults."""

    name: ClassVar[str] = ""
    config_schema: ClassVar[dict] = {}
    strategy: ClassVar[int | None] = None  #: kernel strategy code, for strategy plugins

    def __init__(self, **config):
        self.config: dict = {}
        self.started = False
        self.configure(config)

    # lifecycle ------------------------------------------------------------------------------
    def configure(self, config: dict) -> None:
        unknown = sorted(set(config) - set(self.config_schema))
        if unknown:
            raise PluginError(f"plugin {self.name!r}: unknown config key {unknown[0]!r} "
                              f"(known: {', '.join(sorted(self.config_schema)) or 'none'})")
        out = {}
        for key, (typ, default, _doc) in self.config_schema.items():
            value = config.get(key, default)
            wrong_type = not isinstance(value, typ) or (isinstance(value, bool) and typ is not bool)
            if value is not None and wrong_type:
                raise PluginError(f"plugin {self.name!r}: config {key!r} = {value!r}: "
                                  f"expected {getattr(typ, '__name__', typ)}")
            out[key] = value
        self.config = out

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.started = False

    # per-cycle hooks (all optional) ---------------------------------------------------------
    def on_cycle_start(self, ctx: CycleContext) -> None:
        pass

    def filter(self, ctx: CycleContext):
        return None

    def score(self, ctx: CycleContext):
        return None

    def order_key(self, ctx: CycleContext):
        return None

    def kernel_args(self, ctx: CycleContext) -> dict:
        """Extra batch keys for ``_core.place_batch`` (called after the class mask is built)."""
        return {}

    def explain(self, ctx: CycleContext, con, nodes: list[int]) -> list[str]:
        """Why this filter keeps pods of constraint ``con`` off each node of ``nodes`` (indices
        where its row is False): one short text per node, naming the value (pending reasons and
        ``kaiwo explain`` group nodes by it). Called only for pods that end unplaced."""
        return [f"excluded by plugin {self.name}"] * len(nodes)

    def on_cycle_end(self, ctx: CycleContext, result) -> None:
        pass


_REGISTRY: dict[str, type[Plugin]] = {}


def register(cls: type[Plugin]) -> type[Plugin]:
    """Class decorator: make a plugin available by its ``name``."""
    if not cls.name:
        raise PluginError(f"{cls.__qualname__} has no name")
    other = _REGISTRY.get(cls.name)
    if other is not None and other is not cls:
        raise PluginError(f"plugin name {cls.name!r} already taken by {other.__qualname__}")
    _REGISTRY[cls.name] = cls
    return cls


#: Entry points that could not be loaded: name -> why. One broken plugin package must not stop the
#: others (or every command that lists plugins); asking for it by name says why it is missing.
BROKEN: dict[str, str] = {}


def _load_entry_points() -> None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _REGISTRY or ep.name in BROKEN:
            continue
        try:
            cls = ep.load()
        except Exception as e:  # noqa: BLE001 - third-party code: any failure leaves that plugin out
            BROKEN[ep.name] = f"entry point {ep.name!r} ({ep.value}) cannot be loaded: {type(e).__name__}: {e}"
            continue
        if not (isinstance(cls, type) and issubclass(cls, Plugin)):
            BROKEN[ep.name] = f"entry point {ep.name!r} ({ep.value}) is not a Plugin class"
            continue
        _REGISTRY[ep.name] = cls


def available() -> list[str]:
    """Names of every registered plugin, entry points included."""
    _load_entry_points()
    return sorted(_REGISTRY)


def plugin_class(name: str) -> type[Plugin]:
    """The class registered as ``name`` (entry points included)."""
    if name not in _REGISTRY:
        _load_entry_points()
    cls = _REGISTRY.get(name)
    if cls is None and name in BROKEN:
        raise PluginError(BROKEN[name])
    if cls is None:
        raise PluginError(f"unknown plugin {name!r} (available: {', '.join(available())})")
    return cls


def create(name: str, **config) -> Plugin:
    """Instantiate and configure a plugin by name."""
    return plugin_class(name)(**config)


class Pipeline:
    """An ordered set of started plugins that together make one placement step.

    Parameters
    ----------
    plugins : list of str, Plugin or (str, dict)
        Names (default config), instances, or (name, config) pairs. Exactly one must be a strategy.
    """

    def __init__(self, plugins):
        self.plugins: list[Plugin] = []
        for p in plugins:
            if isinstance(p, Plugin):
                self.plugins.append(p)
            elif isinstance(p, str):
                self.plugins.append(create(p))
            else:
                name, cfg = p
                self.plugins.append(create(name, **(cfg or {})))
        strategies = [p for p in self.plugins if p.strategy is not None]
        if len(strategies) != 1:
            raise PluginError(f"a placement pipeline needs exactly one strategy plugin, got "
                              f"{[p.name for p in strategies] or 'none'}")
        self.strategy = strategies[0]
        for p in self.plugins:
            if not p.started:
                p.start()

    def stop(self) -> None:
        for p in self.plugins:
            p.stop()

    def class_mask(self, ctx: CycleContext) -> np.ndarray:
        """AND of every filter's [C, N] mask, as uint8. Each filter's own mask is kept in
        ``ctx.extra["filter_masks"]`` (references, no copy) so an unplaced pod's reason can say
        which filter rejected which node (:func:`filter_verdicts`)."""
        mask = np.ones(ctx.shape, dtype=np.uint8)
        kept = ctx.extra["filter_masks"] = []
        for p in self.plugins:
            m = p.filter(ctx)
            if m is not None:
                m = _check(p, "filter", np.asarray(m), ctx.shape)
                kept.append((p, m))
                mask &= m.astype(np.uint8)
        return mask

    def extra_score(self, ctx: CycleContext) -> np.ndarray | None:
        """Sum of every score plugin's contribution, or None if none contributes."""
        total = None
        for p in self.plugins:
            s = p.score(ctx)
            if s is None:
                continue
            s = np.asarray(s, dtype=np.float64)
            if s.ndim == 1:
                s = np.broadcast_to(s, ctx.shape)
            s = _check(p, "score", s, ctx.shape)
            total = s.copy() if total is None else total + s
        return None if total is None else np.ascontiguousarray(total)

    def kernel_args(self, ctx: CycleContext) -> dict:
        """Every plugin's extra kernel inputs; two plugins giving the same key is an error."""
        out: dict = {}
        for p in self.plugins:
            args = p.kernel_args(ctx)
            both = set(args) & set(out)
            if both:
                raise PluginError(f"plugin {p.name!r}: kernel_args key {sorted(both)[0]!r} is also "
                                  "given by another plugin")
            out.update(args)
        return out

    def order_keys(self, ctx: CycleContext) -> list[np.ndarray]:
        keys = []
        for p in self.plugins:
            k = p.order_key(ctx)
            if k is not None:
                keys.append(_check(p, "order_key", np.asarray(k), (len(ctx.batch),)))
        return keys


def filter_verdicts(ctx: CycleContext, cls: int, nodes=None) -> list[list[tuple[str, str]]]:
    """For constraint class ``cls``: per node of ``nodes`` (default: all), (plugin name, text) of
    every filter that rejects it, in pipeline order (empty = every filter lets it through). Uses the masks
    :meth:`Pipeline.class_mask` kept; asks each filter's :meth:`Plugin.explain` only about the
    nodes it rejects, so the cost is per rejected node of one class, never per pod."""
    nodes = np.arange(ctx.shape[1]) if nodes is None else np.asarray(nodes, dtype=np.int64)
    out: list[list[tuple[str, str]]] = [[] for _ in range(len(nodes))]
    con = ctx.constraints[cls]
    for p, m in ctx.extra.get("filter_masks", ()):
        bad = np.flatnonzero(~np.asarray(m[cls], dtype=bool)[nodes])
        if not len(bad):
            continue
        for j, text in zip(bad.tolist(), _explained(p, ctx, con, nodes[bad].tolist())):
            out[j].append((p.name, text))
    return out


def _explained(plugin: Plugin, ctx: CycleContext, con, nodes: list[int]) -> list[str]:
    """``plugin.explain``, or the generic text if it fails or answers the wrong length: the reasons
    of pending pods are written every cycle, and a plugin's explanation must never be what fails it."""
    try:
        texts = [str(t) for t in plugin.explain(ctx, con, nodes)]
    except Exception:  # noqa: BLE001 - third-party code
        texts = []
    return texts if len(texts) == len(nodes) else Plugin.explain(plugin, ctx, con, nodes)


def _check(plugin: Plugin, hook: str, arr: np.ndarray, shape) -> np.ndarray:
    if arr.shape != tuple(shape):
        raise PluginError(f"plugin {plugin.name!r}: {hook} returned shape {arr.shape}, "
                          f"expected {tuple(shape)}")
    return arr
