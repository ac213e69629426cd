"""The plugin framework: registry, lifecycle, validated config, vectorised hooks."""
import numpy as np
import pytest

import kaiwo_core as kc
from kaiwo_core import plugins


def cluster(n=3):
    return kc.Snapshot.from_arrays([f"n{i}" for i in range(n)], cpu=[64000] * n, memory=[10**6] * n,
                                   gpus=[8] * n)


class AvoidNode(kc.Plugin):
    name = "test-avoid-node"
    config_schema = {"node": (str, "n0", "node to keep empty")}

    def filter(self, ctx):
        mask = np.ones(ctx.shape, bool)
        mask[:, ctx.cluster.index(self.config["node"])] = False
        return mask


class PreferLast(kc.Plugin):
    name = "test-prefer-last"

    def score(self, ctx):
        return np.arange(ctx.cluster.n_nodes, dtype=float) * 10  # one column for every class


def setup_module():
    kc.register(AvoidNode)
    kc.register(PreferLast)


def test_filter_plugin_masks_whole_batch():
    snap = cluster()
    b = kc.batch_from_arrays(cpu=[1000] * 4, memory=[1] * 4, gpus=[1] * 4)
    pipe = kc.Pipeline([("test-avoid-node", {"node": "n0"}), "binpack"])
    r = kc.place(snap.cluster, snap.state.copy(), b, pipe)
    assert set(r.node.tolist()) == {1}
    assert pipe.plugins[0].started


def test_score_plugin_changes_choice():
    snap = cluster()
    b = kc.batch_from_arrays(cpu=[1000], memory=[1], gpus=[1])
    r = kc.place(snap.cluster, snap.state.copy(), b, kc.Pipeline(["test-prefer-last", "spread"]))
    assert r.node.tolist() == [2]


def test_config_validation():
    with pytest.raises(kc.PluginError, match="unknown config key 'nod'"):
        plugins.create("test-avoid-node", nod="x")
    with pytest.raises(kc.PluginError, match="expected str"):
        plugins.create("test-avoid-node", node=3)


def test_unknown_plugin_and_strategy_count():
    with pytest.raises(kc.PluginError, match="unknown plugin 'nope'"):
        plugins.create("nope")
    with pytest.raises(kc.PluginError, match="exactly one strategy"):
        kc.Pipeline(["taints"])
    with pytest.raises(kc.PluginError, match="exactly one strategy"):
        kc.Pipeline(["binpack", "spread"])


def test_bad_hook_shape_is_reported():
    class Bad(kc.Plugin):
        name = "test-bad-shape"

        def filter(self, ctx):
            return np.ones(3)
    snap = cluster()
    b = kc.batch_from_arrays(cpu=[1], memory=[1])
    with pytest.raises(kc.PluginError, match="test-bad-shape.*filter returned shape"):
        kc.place(snap.cluster, snap.state.copy(), b, kc.Pipeline([Bad(), "binpack"]))


def test_builtins_listed():
    names = plugins.available()
    assert {"binpack", "spread", "frag", "taints", "node-affinity", "gpu-model", "gpu-resource"} <= set(names)


def test_lifecycle_stop():
    pipe = kc.Pipeline(["binpack"])
    pipe.stop()
    assert not pipe.plugins[0].started


def test_a_broken_plugin_package_leaves_only_itself_out(monkeypatch, capsys):
    """An installed entry point whose module is gone (an uninstalled or renamed package) used to
    raise from every listing: now it is left out, `kaiwo plugins` warns, and asking for it by name
    says why."""
    from importlib.metadata import EntryPoint

    from kaiwo.cli import main

    broken = EntryPoint("gone", "no_such_module_anywhere:Plugin", plugins.ENTRY_POINT_GROUP)
    monkeypatch.setattr(plugins, "entry_points", lambda group: [broken])
    monkeypatch.setattr(plugins, "BROKEN", {})
    assert "binpack" in plugins.available() and "gone" not in plugins.available()
    with pytest.raises(plugins.PluginError, match="no_such_module_anywhere.*ModuleNotFoundError"):
        plugins.create("gone")
    assert main(["plugins"]) == 0
    captured = capsys.readouterr()
    assert "binpack" in captured.out and "'gone'" in captured.err


@pytest.mark.parametrize("slots", [1, 10**9])
def test_metrics_plugin_store_size_is_bounded(slots):
    """store_slots sizes a ring allocated up front: a value past the maximum is a configuration
    error naming the key, not a multi-gigabyte allocation."""
    with pytest.raises(plugins.PluginError, match=r"store_slots' = %d" % slots):
        plugins.create("metrics", store_slots=slots)
