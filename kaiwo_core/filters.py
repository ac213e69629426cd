"""Built-in placement plugins: node filters over constraint classes, and the scoring strategies.

Filters evaluate each distinct :class:`~kaiwo_core.requests.Constraint` once against all nodes with
numpy (label columns are compared as arrays), giving rows of the [C, N] class mask. Only tainted
nodes are visited one by one, and a cluster has few of those.

Strategies carry no Python code: they select the compiled scoring function of the kernel.
"""
from __future__ import annotations

import numpy as np

from .plugins import CycleContext, Plugin, register

STRATEGY_BINPACK, STRATEGY_SPREAD, STRATEGY_FRAG = 0, 1, 2
STRATEGIES = {"binpack": STRATEGY_BINPACK, "spread": STRATEGY_SPREAD, "frag": STRATEGY_FRAG}
DEFAULT_PLUGINS = ("node-affinity", "taints", "gpu-model", "gpu-resource")


def _label_column(ctx: CycleContext, key: str) -> np.ndarray:
    """Object array of every node's value for label ``key`` (None where absent), cached per cycle."""
    cache = ctx.extra.setdefault("label_columns", {})
    col = cache.get(key)
    if col is None:
        col = np.array([n.labels.get(key) for n in ctx.cluster.nodes] + [None], dtype=object)[:-1]
        cache[key] = col
    return col


def _rows(ctx: CycleContext, row_fn) -> np.ndarray:
    """Stack one boolean row per constraint class; classes with equal rows computed once."""
    c, n = ctx.shape
    out = np.ones((c, n), dtype=bool)
    for i, con in enumerate(ctx.constraints):
        row = row_fn(con)
        if row is not None:
            out[i] = row
    return out


@register
class NodeAffinity(Plugin):
    """``spec.nodeSelector`` and required node affinity (In, NotIn, Exists, DoesNotExist)."""

    name = "node-affinity"

    def filter(self, ctx):
        def row(con):
            if not con.node_selector and not con.affinity:
                return None
            ok = np.ones(ctx.cluster.n_nodes, dtype=bool)
            for key, value in con.node_selector:
                ok &= _label_column(ctx, key) == value
            if con.affinity:  # terms are ORed, expressions within a term ANDed
                any_term = np.zeros_like(ok)
                for term in con.affinity:
                    t = np.ones_like(ok)
                    for key, op, values in term:
                        col = _label_column(ctx, key)
                        present = col != None  # noqa: E711 (elementwise on an object array)
                        if op == "Exists":
                            t &= present
                        elif op == "DoesNotExist":
                            t &= ~present
                        else:
                            inside = np.isin(col, list(values)) & present
                            t &= inside if op == "In" else ~inside
                    any_term |= t
                ok &= any_term
            return ok
        return _rows(ctx, row)


def tolerates(tolerations, taint) -> bool:
    """Kubernetes toleration matching for one (key, value, effect) taint."""
    key, value, effect = taint
    for t_key, op, t_value, t_effect in tolerations:
        if t_effect and t_effect != effect:
            continue
        if op == "Exists" and (not t_key or t_key == key):
            return True
        if op == "Equal" and t_key == key and t_value == value:
            return True
    return False


@register
class Taints(Plugin):
    """NoSchedule/NoExecute taints must be tolerated; cordoned (unschedulable) nodes take nothing."""

    name = "taints"

    def filter(self, ctx):
        nodes = ctx.cluster.nodes
        base = np.array([not nd.unschedulable for nd in nodes], dtype=bool)
        tainted = [i for i, nd in enumerate(nodes) if nd.taints and not nd.unschedulable]

        def row(con):
            r = base.copy()
            for i in tainted:
                r[i] = all(tolerates(con.tolerations, t) for t in nodes[i].taints)
            return r
        return _rows(ctx, row)


@register
class GpuModel(Plugin):
    """``kaiwo.ai/gpu-model``: the node's GPU model must be one of those named."""

    name = "gpu-model"

    def filter(self, ctx):
        if all(con.gpu_models is None for con in ctx.constraints):
            return None  # no pod names a model: every node's model need not be read
        models = np.array([nd.model.upper() for nd in ctx.cluster.nodes] + [""], dtype=object)[:-1]

        def row(con):
            return None if con.gpu_models is None else np.isin(models, list(con.gpu_models))
        return _rows(ctx, row)


@register
class GpuResource(Plugin):
    """A pod asking for a named GPU resource (``amd.com/gpu``, ``amd.com/cpx_nps4``,
    ``nvidia.com/gpu``) goes only to nodes that advertise it."""

    name = "gpu-resource"

    def filter(self, ctx):
        def row(con):
            if con.gpu_resource is None:
                return None
            return np.array([con.gpu_resource in nd.resources for nd in ctx.cluster.nodes],
                            dtype=bool)
        return _rows(ctx, row)


class _Strategy(Plugin):
    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        cls.strategy = STRATEGIES[cls.name]


@register
class Binpack(_Strategy):
    """Fullest node first: GPU utilisation after placement, then CPU. Keeps whole nodes free for
    large jobs. CPU-only pods stay off GPU nodes when they can."""

    name = "binpack"


@register
class Spread(_Strategy):
    """Emptiest node first: spreads load (and blast radius) across nodes."""

    name = "spread"


@register
class Frag(_Strategy):
    """Fragmentation-aware: the node whose free GPU capacity stays most usable for the request
    shapes in this batch (after FGD, Weng et al., ATC'23)."""

    name = "frag"
