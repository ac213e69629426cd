"""Sane maxima for values read from objects, checked while decoding.

A hostile or mistyped number must never size an allocation or overflow an int64 sum: the placement
kernel reserves result space for the GPUs a batch asks for, fair shares sum requests over every pod,
capacities are summed over every node. Each value is refused above its maximum with the object, the
field and the value named (the CRD schemas in ``deploy/crds`` carry the same maxima, so the API
server refuses such objects first).
"""
from __future__ import annotations

#: Kubernetes int32 fields (Pod ``spec.priority``, PriorityClass ``value``, queue priorities).
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
#: Logical GPUs (devices) on one node, and asked for by one pod (a pod runs on one node). The
#: largest nodes today hold 8 GPUs of 8 compute partitions each (64); 1,024 leaves room.
MAX_DEVICES = 1024
#: CPU in milli-cores and memory in MiB on one node or for one pod: 2**40 (10**9 cores, 1 EiB),
#: so sums over a million nodes or pods stay far inside int64.
MAX_CPU_MILLI = 2**40
MAX_MEMORY_MIB = 2**40
#: Compute units one logical GPU may be asked to have (``kaiwo.ai/gpu-min-cus``); an MI300X has 304.
MAX_GPU_CUS = 65_536
#: Pod slots on one node (the kubelet's --max-pods is 110 by default).
MAX_PODS_PER_NODE = 2**20
#: Replicas (and minMembers) of one KaiwoJob; Kubernetes' indexed Jobs allow 100,000 completions.
MAX_REPLICAS = 100_000
