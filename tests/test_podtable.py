"""Pods as columns (kaiwo_core.scheduling.podtable): the columns a cycle selects from say what the pods say,
and a snapshot whose pod lists change reads them again."""
import json

import numpy as np
import pytest

import kaiwo_core as kc
from kaiwo.simulator import synth
from kaiwo_core.scheduling.podtable import PodTable, csr_rows
from kaiwo_core.model.requests import NO_CONSTRAINT, batch_from_requests, pod_name


@pytest.fixture(scope="module")
def objects():
    return synth.dump_objects("S", seed=3, running=True)


def _doc(d) -> str:
    doc = d.to_dict()
    doc["stats"].pop("timingsMs")
    return json.dumps(doc, sort_keys=True)


def test_subset_is_the_batch_of_those_pods(objects):
    snap = kc.Snapshot.from_objects(objects)
    table = snap.pending_table()
    rows = np.random.default_rng(1).permutation(len(table))[:len(table) // 3]
    got, want = table.batch.subset(rows), batch_from_requests([table.reqs[i] for i in rows])
    for k in ("cpu", "mem", "kind", "count", "milli", "gpu_mem", "exclusive", "cls", "priority", "created"):
        np.testing.assert_array_equal(getattr(got, k), getattr(want, k), err_msg=k)
    assert got.names == want.names and got.constraints == want.constraints
    assert table.batch.subset(np.zeros(0, np.int64)).constraints == [NO_CONSTRAINT]


def test_charges_follow_the_assignments(objects):
    snap = kc.Snapshot.from_objects(objects)
    table = snap.running_table()
    c = snap.cluster
    for i in (0, len(table) // 2, len(table) - 1):
        r = table.reqs[i]
        devs = table.asg_dev[table.asg_start[i]:table.asg_start[i + 1]].tolist()
        want = [c.device_index(c.index(r.node), d["gpu"], d["partition"]) for d in r.assignment or []]
        assert devs == want
    rows = np.array([5, 2, 2, 9])
    start, idx = csr_rows(table.asg_start, rows)
    assert np.diff(start).tolist() == [int(table.asg_start[i + 1] - table.asg_start[i]) for i in rows]
    assert table.asg_dev[idx].tolist() == sum((table.asg_dev[table.asg_start[i]:table.asg_start[i + 1]].tolist()
                                               for i in rows), [])


def test_snapshot_reads_changed_pod_lists_again(objects):
    snap = kc.Snapshot.from_objects(objects)
    assert snap.pending_table() is snap.pending_table()
    assert snap.copy().running_table() is snap.running_table()  # a copy shares the columns
    # Leave out one pending and one running pod: the same decisions as a snapshot built without them.
    gone = {snap.pending[3].name, snap.running[7].name}
    del snap.pending[3]
    snap.running[7:8] = []
    fresh = kc.Snapshot.from_objects([o for o in objects if o["kind"] != "Pod" or pod_name(o) not in gone])
    # The running pod's charge stays in the edited snapshot's state; compare on the fresh state.
    snap.state, snap.dev_xcd_held = fresh.state, fresh.dev_xcd_held
    assert len(snap.pending_table()) == len(fresh.pending) and len(snap.running_table()) == len(fresh.running)
    assert _doc(kc.schedule(snap)) == _doc(kc.schedule(fresh))


def test_equal_pods_keep_the_table():
    snap = kc.Snapshot.from_objects(synth.dump_objects("S", seed=4))
    table = snap.pending_table()
    assert PodTable.describes(table, list(snap.pending))
    assert not PodTable.describes(table, snap.pending[1:] + snap.pending[:1])


def _same_table(a: PodTable, b: PodTable) -> None:
    assert a.reqs == b.reqs and a.queue_names == b.queue_names and a.unit_names == b.unit_names
    assert a.batch.names == b.batch.names and a.batch.constraints == b.batch.constraints
    for k in ("queue", "in_gang", "unit", "start", "preemptible", "node", "asg_start", "asg_dev",
              "asg_milli", "asg_mem", "asg_xcds"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k), err_msg=k)
    for k in ("cpu", "mem", "kind", "count", "milli", "gpu_mem", "exclusive", "cls", "priority", "created"):
        np.testing.assert_array_equal(getattr(a.batch, k), getattr(b.batch, k), err_msg=k)


@pytest.mark.parametrize("role", ["running", "pending"])
def test_a_table_built_on_an_earlier_one_is_a_full_read(objects, role):
    snap = kc.Snapshot.from_objects(objects)
    other = kc.Snapshot.from_objects(synth.dump_objects("S", seed=8, running=True))
    old = snap.tables[role]
    pods = list(getattr(snap, role))
    rng = np.random.default_rng(2)
    kept = [pods[i] for i in np.sort(rng.choice(len(pods), len(pods) * 2 // 3, replace=False))]
    mixes = [kept + getattr(other, role)[:50],                 # pods leave, new ones come
             getattr(other, role)[:20] + kept[::-1],           # new first, the rest reordered
             kept[:10], [], list(pods)]
    for reqs in mixes:
        _same_table(PodTable.build(reqs, snap.cluster, reuse=old), PodTable.build(reqs, snap.cluster))
    # Another cluster's table is not reused (its node and device indices mean other things).
    fresh = PodTable.build(pods[:5], other.cluster, reuse=old)
    _same_table(fresh, PodTable.build(pods[:5], other.cluster))
