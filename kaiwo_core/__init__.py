"""kaiwo_core: the scheduling core of Kaiwo as a library.

A snapshot of the cluster in, decisions out; no Kubernetes client, no I/O. The hot paths are
compiled (C++ via pybind11 in ``_core``, Cython in ``_quantity``); everything here takes and returns
columnar numpy arrays.

>>> import kaiwo_core as kc
>>> snap = kc.Snapshot.from_arrays(["n1"], cpu=[64000], memory=[512000], gpus=[8])
>>> batch = kc.batch_from_arrays(cpu=[1000] * 3, memory=[1024] * 3, fraction=[500, 500, 600])
>>> result = kc.place(snap.cluster, snap.state.copy(), batch)
>>> result.node.tolist()
[0, 0, 0]
"""
from .model.cluster import Cluster, ClusterState, NodeError, cluster_from_arrays, cluster_from_nodes
from .scheduling.cycle import Decisions, schedule
from .model.errors import ObjectError
from .model.gpu import MODELS, PartitionError, partitioning
from .scheduling.placement import Placement, default_pipeline, place
from .scheduling import filters  # kc.filters.DEFAULT_PLUGINS, as before the subpackages
from .plugins import CycleContext, Pipeline, Plugin, PluginError, register
from .model.requests import PodBatch, PodError, batch_from_arrays, batch_from_requests, pod_request
from .scheduling.snapshot import Snapshot

__version__ = "0.1.0"

__all__ = [
    "MODELS", "Cluster", "filters", "ClusterState", "CycleContext", "Decisions", "NodeError", "ObjectError",
    "PartitionError", "Pipeline", "Placement", "Plugin", "PluginError", "PodBatch", "PodError",
    "Snapshot", "batch_from_arrays", "batch_from_requests", "cluster_from_arrays",
    "cluster_from_nodes", "default_pipeline", "partitioning", "place", "pod_request", "register",
    "schedule",
]
