"""Type stubs for the pybind11 module kaiwo_core._core (one section per bindings/register_<area>.cpp).

Sections are added by the area that owns them; areas without a section yet are reached through the
module-level ``__getattr__`` below (a partial stub), so type checkers do not reject them.
"""
from typing import Any, TypedDict

import numpy as np
import numpy.typing as npt

def __getattr__(name: str) -> Any: ...  # areas not stubbed yet (partial stub)

# ----------------------------------------------------------------- queues (register_queues.cpp)
# The _TypedDicts describe the dict-of-arrays contracts; they exist only in this stub.

QUEUE_RESOURCES: tuple[str, str, str]  # ("gpu", "cpu", "memory"): the 3 columns of every queue array
PHASE_NONE: int  # 0: not admitted by the virtual allocation
PHASE_DESERVED: int  # 1: admitted within deserved quota
PHASE_OVER_QUOTA: int  # 2: admitted over quota (H-DRF)
ORDER_OK: int  # 0: in `order`
ORDER_HELD_LIMIT: int  # 1: held back, would push its queue or an ancestor over `limit`

class _QueueTree(TypedDict, total=False):
    parent: npt.NDArray[np.int32]  # [Q], -1 = top level, else < own index
    quota: npt.NDArray[np.int64]  # [Q, 3], -1 = unlimited
    limit: npt.NDArray[np.int64]  # [Q, 3], -1 = none
    weight: npt.NDArray[np.float64]  # [Q, 3], overQuotaWeight > 0
    priority: npt.NDArray[np.int32]  # [Q], higher first
    capacity: npt.NDArray[np.int64]  # [3], cluster total
    deserved: npt.NDArray[np.int64]  # [Q, 3], order_pending only
    fair_share: npt.NDArray[np.int64]  # [Q, 3], order_pending only

class _FairSharePods(TypedDict):
    pod_start: npt.NDArray[np.int64]  # [Q + 1], CSR of each leaf's pods, in queue order
    req: npt.NDArray[np.int64]  # [P, 3]

class _FairShareResult(TypedDict):
    demand: npt.NDArray[np.int64]  # [Q, 3]
    deserved: npt.NDArray[np.int64]  # [Q, 3]
    fair_share: npt.NDArray[np.int64]  # [Q, 3], max(deserved, allocated)
    allocated: npt.NDArray[np.int64]  # [Q, 3], the virtual allocation
    admitted: npt.NDArray[np.uint8]  # [P]
    phase: npt.NDArray[np.int8]  # [P], PHASE_*

class _QueueState(TypedDict):
    allocated: npt.NDArray[np.int64]  # [Q, 3] by running pods; internal rows 0 or the children's sum

class _PendingPods(TypedDict):
    pod_start: npt.NDArray[np.int64]  # [Q + 1], CSR of each leaf's pending pods
    req: npt.NDArray[np.int64]  # [P, 3]
    key: npt.NDArray[np.float64]  # [P], within-queue order, smaller first, finite
    tiebreak: npt.NDArray[np.int64]  # [P], rank of the uid, smaller first
    gang: npt.NDArray[np.int32]  # [P], -1 = none; one queue per gang

class _OrderResult(TypedDict):
    order: npt.NDArray[np.int64]  # [P'], pod indices in the order placement should try them
    status: npt.NDArray[np.int8]  # [P], ORDER_OK or ORDER_HELD_LIMIT

def fair_share(tree: _QueueTree, pods: _FairSharePods) -> _FairShareResult:
    """Hierarchical fair shares (pod-granular dynamic H-DRF); see csrc/fairshare.hpp."""
def order_pending(tree: _QueueTree, state: _QueueState, pods: _PendingPods) -> _OrderResult:
    """Order pending pods across the queue tree (keyed heaps); see csrc/ordering.hpp."""
