"""Trace reading, Go's math/rand and the FGD experiment's arrivals (kaiwo_core.model.trace).

Only the bundled openb ``default`` pod list and GPU node list are used (kaiwo/data); other inputs
are small CSV files written here.
"""
from __future__ import annotations

import gzip

import numpy as np
import pytest

from kaiwo.simulator.offline import BUNDLED_NODES, BUNDLED_PODS, bundled
from kaiwo_core.model import trace as T

POD_HEADER = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time\n"


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


# ------------------------------------------------------------------------------ Go's math/rand

def test_gorand_matches_go_published_outputs():
    # Well-known outputs of Go's math/rand: rand.Seed(1) (the default source) gives Int()
    # 5577006791947779410, ...; rand.Seed(2): 1543039099823358511, ...; rand.Seed(10), Intn(10)
    # ten times: 4879849558; seed 1, Intn(100): the Go Tour's 81, 87, 47, ...
    r = T.GoRand(1)
    assert [r.int63() for _ in range(3)] == [5577006791947779410, 8674665223082153551, 6129484611666145821]
    r = T.GoRand(2)
    assert [r.int63() for _ in range(3)] == [1543039099823358511, 2444694468985893231, 474893212811123542]
    r = T.GoRand(10)
    assert "".join(str(r.intn(10)) for _ in range(10)) == "4879849558"
    r = T.GoRand(1)
    assert [r.intn(100) for _ in range(10)] == [81, 87, 47, 59, 81, 18, 25, 40, 56, 0]


def test_gorand_seed_reduction_and_zero():
    # Seeds are taken modulo 2^31 - 1 (Go's %: sign of the dividend), 0 maps to a fixed seed.
    assert T.GoRand(1 + (2**31 - 1)).int63() == T.GoRand(1).int63()
    assert T.GoRand(0).int63() == T.GoRand(2**31 - 1).int63()
    assert T.GoRand(-5).int63() == T.GoRand(2**31 - 1 - 5).int63()


def test_gorand_perm_and_shuffle_are_permutations_and_deterministic():
    p = T.GoRand(7).perm(50)
    assert sorted(p) == list(range(50)) and p == T.GoRand(7).perm(50) and p != T.GoRand(8).perm(50)
    items = list(range(40))
    T.GoRand(3).shuffle(items)
    again = list(range(40))
    T.GoRand(3).shuffle(again)
    assert items == again and sorted(items) == list(range(40)) and items != list(range(40))
    with pytest.raises(ValueError):
        T.GoRand(1).int31n(0)


# ------------------------------------------------------------------------------------ reading

def test_bundled_files_read():
    pods = T.read_pod_csv(bundled(BUNDLED_PODS))
    nodes = T.read_node_csv(bundled(BUNDLED_NODES))
    assert len(pods) == 8152 and len(nodes) == 1213 and nodes.n_gpus == 6212
    assert pods.names[0] == "openb-pod-0000" and pods.cpu[0] == 12000 and pods.gpu_milli[1] == 460
    assert int((pods.num_gpu == 0).sum()) == 1088
    assert np.isnan(pods.creation).sum() == 0 and pods.gpu_request.dtype == np.int64


def test_five_column_and_gzip_files(tmp_path):
    text = "name,cpu_milli,memory_mib,num_gpu,gpu_milli\np1,1000,100,1,500\np0,0,0,0,0\np2,2000,10,2,1000\n"
    plain = write(tmp_path, "multigpu.csv", text)
    gz = tmp_path / "multigpu.csv.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    for path in (plain, str(gz)):
        t = T.read_pod_csv(path)
        assert t.names == ["p1", "p0", "p2"] and t.gpu_spec == ["", "", ""]
        assert t.gpu_request.tolist() == [500, 0, 2000] and np.isnan(t.creation).all()
        assert t.name_order().tolist() == [1, 0, 2]


@pytest.mark.parametrize("body,line,column,words", [
    ("p,1,1,1,1001,,,,,,\n", 2, "gpu_milli", "<= 1000"),
    ("p,1,1,0,500,,,,,,\n", 2, "gpu_milli", "num_gpu 0"),
    ("p,1,1,2,0,,,,,,\n", 2, "gpu_milli", "1..1000"),
    ("p,-3,1,0,0,,,,,,\n", 2, "cpu_milli", ">= 0"),
    ("p,x,1,0,0,,,,,,\n", 2, "cpu_milli", "not an integer"),
    ("p,1.5,1,0,0,,,,,,\n", 2, "cpu_milli", "whole number"),
    ("p,1,1,0,0,,,,,,\nq,1,1,0,0,,,,,,\np,1,1,0,0,,,,,,\n", 4, "name", "duplicate pod name (first on line 2)"),
    ("p,1,1,0,0,,,,abc,,\n", 2, "creation_time", "seconds"),
    ("p,1,1,0\n", 2, None, "4 fields"),
])
def test_bad_pod_rows_name_file_line_and_column(tmp_path, body, line, column, words):
    path = write(tmp_path, "pods.csv", POD_HEADER + body)
    with pytest.raises(T.TraceError) as e:
        T.read_pod_csv(path)
    assert e.value.line == line and e.value.column == column and words in str(e.value)
    assert str(e.value).startswith(f"{path}:{line}:")


def test_bad_pod_headers(tmp_path):
    with pytest.raises(T.TraceError, match=r"column 'gpu_milli'.*missing column"):
        T.read_pod_csv(write(tmp_path, "a.csv", "name,cpu_milli,memory_mib,num_gpu\np,1,1,0\n"))
    with pytest.raises(T.TraceError, match=r"column 'gpus'.*unknown column"):
        T.read_pod_csv(write(tmp_path, "b.csv", "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpus\np,1,1,0,0,1\n"))
    with pytest.raises(T.TraceError, match="empty file"):
        T.read_pod_csv(write(tmp_path, "c.csv", ""))
    with pytest.raises(T.TraceError, match="no pods"):
        T.read_pod_csv(write(tmp_path, "d.csv", "name,cpu_milli,memory_mib,num_gpu,gpu_milli\n"))


def test_node_list_errors(tmp_path):
    ok = T.read_node_csv(write(tmp_path, "n.csv", "sn,cpu_milli,memory_mib,gpu,model\nb,1000,10,2,T4\na,1000,10,0,\n"))
    assert ok.names == ["b", "a"] and ok.n_gpus == 2 and ok.models == ["T4", ""]
    with pytest.raises(T.TraceError) as e:
        T.read_node_csv(write(tmp_path, "m.csv", "sn,cpu_milli,memory_mib,gpu,model\nb,1000,10,2,\n"))
    assert e.value.line == 2 and e.value.column == "model" and "needs a model" in str(e.value)
    with pytest.raises(T.TraceError, match="column 'gpu'"):
        T.read_node_csv(write(tmp_path, "g.csv", "sn,cpu_milli,memory_mib,gpu,model\nb,1000,10,two,T4\n"))


def test_to_cluster_orders_nodes_by_rank():
    nodes = T.NodeList("x", ["a", "b", "c"], np.array([1000, 2000, 3000]), np.array([10, 20, 30]),
                       np.array([1, 2, 0], np.int32), ["T4", "V100M16", ""])
    c = nodes.to_cluster(rank=[2, 0, 1])
    assert [n.name for n in c.nodes] == ["0000-b", "0001-c", "0002-a"]
    assert c.node_cpu_cap.tolist() == [2000, 3000, 1000]
    assert c.node_dev_start.tolist() == [0, 2, 2, 3] and c.dev_node.tolist() == [0, 0, 2]
    assert [n.model for n in c.nodes] == ["V100M16", "", "T4"]
    assert (c.dev_mem_cap == 0).all()  # no GPU memory: compute packing only


# ----------------------------------------------------------------------- the FGD experiment

def test_fgd_arrivals_seed_42_on_default():
    pods = T.read_pod_csv(bundled(BUNDLED_PODS))
    nodes = T.read_node_csv(bundled(BUNDLED_NODES))
    a = T.fgd_arrivals(pods, nodes, 42)
    assert len(a.pods) == 10866 and a.n_original == 8152  # the README's count for seed 42
    assert sorted(a.pods[:8152].tolist()) == list(range(8152))  # the whole trace, shuffled
    assert sorted(a.node_rank.tolist()) == list(range(1213))
    total = pods.gpu_request[a.pods].sum()
    assert total <= 1.3 * 6212 * 1000 < total + 1000  # stopped by the next draw
    b = T.fgd_arrivals(pods, nodes, 43)
    assert not np.array_equal(a.pods[:100], b.pods[:100])


def test_fgd_arrivals_tune_down(tmp_path):
    # Requests above the target: pods leave the shuffled list until they fit, nothing is added.
    body = "".join(f"p{i},1000,10,1,1000,,,,,,\n" for i in range(10))
    pods = T.read_pod_csv(write(tmp_path, "p.csv", POD_HEADER + body))
    nodes = T.NodeList("n", ["n0"], np.array([64000]), np.array([1000]), np.array([4], np.int32), ["T4"])
    a = T.fgd_arrivals(pods, nodes, 42, ratio=1.3)
    assert len(a.pods) == 5 == a.n_original and len(set(a.pods.tolist())) == 5  # 5 GPUs <= 1.3 x 4


def test_workload_shapes_order_cut_and_weights(tmp_path):
    rows = (["a{},4000,10,1,500,,,,,,\n"] * 5 + ["b{},8000,10,1,1000,,,,,,\n"] * 3
            + ["c{},2000,10,0,0,,,,,,\n"] * 3 + ["d{},1000,10,8,1000,V100M16|V100M32,,,,,\n"])
    body = "".join(r.format(i) for i, r in enumerate(rows))
    t = T.read_pod_csv(write(tmp_path, "p.csv", POD_HEADER + body))
    wl = T.workload_shapes(t, coverage=70)
    # 12 pods; 70% = 8.4 pods: shapes of 5 and 3 pods (8) are not enough, the next tie of 3 pods
    # goes to the larger CPU first (8000 before 2000 among equal counts: b before c).
    assert wl.cpu.tolist() == [4000, 8000, 2000] and wl.num_gpu.tolist() == [1, 1, 0]
    assert wl.count.tolist() == [5, 3, 3]
    scale = 11.0 / 12.0
    assert wl.weight.tolist() == [(5 / 12) / scale, (3 / 12) / scale, (3 / 12) / scale]
    full = T.workload_shapes(t, coverage=100)
    assert len(full) == 4 and full.gpu_spec[-1] == "V100M16|V100M32" and full.weight[-1] == 1 / 12
    assert T.workload_shapes(t, coverage=100, models=False).gpu_spec[-1] == ""


def test_constraint_classes_ignore_spec_of_cpu_only_pods():
    cons, cls = T.constraint_classes(["", "T4|V100M16", "T4", "T4|V100M16"], np.array([1, 1, 0, 2]))
    assert cls.tolist() == [0, 1, 0, 1] and len(cons) == 2
    assert cons[1].gpu_models == frozenset({"T4", "V100M16"})
