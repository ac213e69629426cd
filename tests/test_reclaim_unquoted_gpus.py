"""Reclaim of a resource no queue has a quota of is still judged (found by
tests/test_fairness_cycles_random.py at 1,000 examples).

One MI300X node in SPX, 8 GPUs. Top-level queues ``qa`` and ``qb``, GPU quota 0 (nobody deserves a
GPU), memory unlimited (-1), CPU unlimited for both -- or 64 CPUs for ``qa`` and 0 for ``qb``.
Running: 8 one-GPU pods of qa (the node is full); pending: 1 more of qa, 2 of qb.

Before: the queue rules looked only at the resources some queue had a non-zero quota of (-1
counted), so the GPU column was dropped; the node lacks only GPUs, so nothing was judged at all:
qb took 2 GPUs from qa, and two cycles later qa's pending pod took one back (ping-pong) -- with
either CPU setting, so counting only positive quotas alone would not have fixed it. Now a pod that
asks for none of the looked-at resources it lacks is judged on all it lacks (here the GPUs).

Worked out by hand. Conservative: qb deserves 0 GPUs, so it reclaims none, ever; qa keeps 8.
Aggressive: demands qa 9, qb 2, equal weights on 8 GPUs: qb's 2 are below an even half, so the
fair shares are qb 2, qa 6; qb reclaims 2 from qa at once, then qa (6 running + 1 pending, fair
share 6) takes nothing back and nothing moves again.
"""
from __future__ import annotations

import pytest

import kaiwo_core as kc
from tests.dumpgen import next_cycle
from tests.scenario_loader import scenario_objects


def scenario(reclaim: str, cpu_qa, cpu_qb) -> list[dict]:
    def queue(name, cpu):
        return {"name": name, "fairness": {"reclaimStrategy": reclaim},
                "resources": {"gpu": {"quota": 0}, "cpu": {"quota": cpu}, "memory": {"quota": -1}}}

    pod = {"gpu": 1, "cpu": 1, "memory": "1Gi"}
    return scenario_objects({
        "nodes": [{"name": "mi300x-0", "gpus": 8, "partition": "spx_nps1"}],
        "queues": [queue("qa", cpu_qa), queue("qb", cpu_qb)],
        "pods": [{"name": "run-qa", "replicas": 8, "nodeName": "mi300x-0", "labels": {"kaiwo.ai/queue": "qa"}, **pod},
                 {"name": "wait-qa", "replicas": 1, "labels": {"kaiwo.ai/queue": "qa"}, **pod},
                 {"name": "wait-qb", "replicas": 2, "labels": {"kaiwo.ai/queue": "qb"}, **pod}]})


def held(objs) -> dict:
    out = {"qa": 0, "qb": 0}
    for o in objs:
        if o["kind"] == "Pod" and o["spec"].get("nodeName"):
            out[o["metadata"]["labels"]["kaiwo.ai/queue"]] += 1
    return out


@pytest.mark.parametrize("cpu", [(-1, -1), (64, 0)], ids=["cpu-unlimited", "cpu-quota-qa"])
@pytest.mark.parametrize("reclaim", ["conservative", "aggressive"])
def test_no_gpu_quota_anywhere_reclaim_converges(reclaim, cpu):
    objs = scenario(reclaim, *cpu)
    moves = []
    for cycle in range(4):
        doc = kc.schedule(kc.Snapshot.from_objects(objs)).to_dict()
        q = {x["name"]: x for x in doc["queues"]}
        assert (q["qa"]["deserved"]["gpu"], q["qb"]["deserved"]["gpu"]) == (0, 0)
        moves += [(cycle, p["preemptor"].split("/")[1][:7], p["pod"].split("/")[1][:6], p["rule"])
                  for p in doc["preemptions"]]
        objs = next_cycle(objs, doc, 0.0)
    if reclaim == "conservative":
        assert moves == []
        assert held(objs) == {"qa": 8, "qb": 0}
    else:
        assert moves == [(0, "wait-qb", "run-qa", "reclaim-aggressive")] * 2
        assert (q["qa"]["fairShare"]["gpu"], q["qb"]["fairShare"]["gpu"]) == (6, 2)
        assert held(objs) == {"qa": 6, "qb": 2}
