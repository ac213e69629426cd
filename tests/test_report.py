"""``kaiwo simulate``'s plots and HTML report (kaiwo.simulator.report): what the figures hold (their
artists, axes and titles), not their pixels, and the HTML report's structure."""
from __future__ import annotations

import base64
import json
import sys
from html.parser import HTMLParser
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from kaiwo.cli import main  # noqa: E402
from kaiwo.simulator import report as R  # noqa: E402
from kaiwo.simulator.offline import MAX_X, PolicySummary, RunResult  # noqa: E402
from kaiwo.simulator.online import OnlineResult, QueueStats  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402


def run(policy, seed, top):
    """A run whose curve follows the diagonal up to ``top`` % and stays there."""
    curve = np.minimum(np.arange(MAX_X + 1, dtype=float), top)
    return RunResult(policy, seed, curve, 5.0, 100, 3, 2, 0.1)


def summaries(seeds):
    return [PolicySummary("fgd", [run("fgd", s, 95.0 + 0.1 * i) for i, s in enumerate(seeds)]),
            PolicySummary("frag", [run("frag", s, 95.2 + 0.2 * i) for i, s in enumerate(seeds)])]


@pytest.fixture
def figures():
    import matplotlib.pyplot as plt
    made = []
    yield made
    for f in made:
        plt.close(f)


def bands(ax):
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


def test_multi_seed_allocation_plot_has_a_band_per_policy_spanning_the_seeds(figures):
    fig = R.allocation_figure(summaries([42, 43, 44]), "t")
    figures.append(fig)
    ax = fig.axes[0]
    main_bands = bands(ax)
    assert len(main_bands) == 2
    # fgd's seeds end at 95.0, 95.1, 95.2: its band at x=130 goes from the lowest to the highest
    ys = main_bands[0].get_paths()[0].vertices[:, 1]
    assert min(ys) == 0.0 and max(ys) == pytest.approx(95.2)
    verts = main_bands[0].get_paths()[0].vertices
    at_130 = sorted(y for x, y in verts if x == 130)
    assert at_130[0] == pytest.approx(95.0) and at_130[-1] == pytest.approx(95.2)
    # the mean is the line, and the legend explains the shading
    line = next(ln for ln in ax.get_lines() if ln.get_label().startswith("fgd"))
    assert line.get_ydata()[130] == pytest.approx(95.1)
    assert any("minimum to maximum" in t.get_text() for t in ax.get_legend().get_texts())
    assert "mean of 3 seeds" in ax.get_ylabel()
    inset = ax.child_axes[0]
    assert len(bands(inset)) == 2
    # the inset's y axis fits the plateau from 100% on (95.0 to 95.6) with a margin, not 0..100
    assert inset.get_ylim() == pytest.approx((94.8, 95.8))


def test_single_seed_allocation_plot_has_no_band(figures):
    fig = R.allocation_figure(summaries([42]), "t")
    figures.append(fig)
    assert bands(fig.axes[0]) == []
    assert not any("minimum" in t.get_text() for t in fig.axes[0].get_legend().get_texts())


def test_policy_lines_differ_in_dash_and_marker_not_colour_alone(figures):
    many = [PolicySummary(f"p{i}", [run(f"p{i}", 42, 95.0)]) for i in range(8)]
    fig = R.allocation_figure(many, "t")
    figures.append(fig)
    lines = [ln for ln in fig.axes[0].get_lines() if ln.get_label().startswith("p")]
    assert len(lines) == 8
    assert len({ln.get_marker() for ln in lines}) == 8
    # matplotlib keeps a line's dash pattern (offset, on-off sequence) only in this attribute
    assert len({repr(ln._unscaled_dash_pattern) for ln in lines}) == 8
    # identical curves: their markers sit at different x, so each stays visible
    assert len({ln.get_markevery() for ln in lines}) == 8


def test_offline_title_says_what_was_run():
    class Trace(list):
        path = "/x/data/openb/openb_pod_list_gpushare40.csv.gz"

    scn = SimpleNamespace(trace=Trace([0] * 10), nodes=[0] * 3, n_gpus=24, ratio=1.3, gpu_model=None,
                          partition="SPX", isolation="time-slicing")
    title = R.offline_title(scn, summaries([42, 43, 44, 50]))
    assert "openb_pod_list_gpushare40.csv.gz" in title and "Offline" in title
    assert "10 pods" in title and "3 nodes / 24 GPUs" in title and "130%" in title
    assert "policies fgd, frag" in title and "4 seeds 42-44,50" in title
    scn.gpu_model, scn.partition, scn.isolation = "mi300x", "cpx", "xcd"
    title = R.offline_title(scn, summaries([42]))
    assert "24 MI300X in CPX, xcd for fractions" in title and "seed 42" in title


def online_result(fairness, waits):
    queues = [QueueStats(name, 8, list(w)) for name, w in waits.items()]
    t = np.arange(len(fairness), dtype=float) * 3600
    return OnlineResult(queues, t, np.linspace(0, 1, len(fairness)), np.array(fairness, dtype=float),
                        jobs=7, cycles=10, wall=0.1, policy="binpack", reclaim="conservative")


def test_online_title_and_fairness_panel_scaled_to_its_data(figures):
    r = online_result([np.nan, 0.93, 0.97, 1.0, np.nan], {"a": [1.0]})
    title = R.online_title("/d/philly_jobs.csv.gz", r, 14, 60.0, 0.2)
    assert "Online" in title and "philly_jobs.csv.gz" in title and "7 jobs" in title
    assert "14 nodes" in title and "node scale 0.2" in title and "binpack" in title
    assert "reclaim conservative" in title and "60 s" in title
    fig = R.online_figure(r, title)
    figures.append(fig)
    util, fair = fig.axes
    assert util.get_title() == title
    lo, hi = fair.get_ylim()
    assert 0.9 < lo < 0.93 and 1.0 <= hi <= 1.01
    assert util.get_ylim() == (0, 102)


def test_fairness_panel_without_data_says_so(figures):
    fig = R.online_figure(online_result([np.nan, np.nan], {}), "t")
    figures.append(fig)
    fair = fig.axes[1]
    assert fair.get_ylim() == (0, 1.01)
    assert any("two or more queues" in t.get_text() for t in fair.texts)


def test_waits_in_hours_on_a_log_axis(figures):
    r = online_result([1.0], {"a": [3600.0, 7200.0, 32400.0], "b": [0.0], "idle": []})
    fig = R.waiting_figure(r, "t")
    figures.append(fig)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and "hours" in ax.get_ylabel()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]  # queues with placed jobs
    tops = {c.get_label(): [b.get_y() + b.get_height() for b in c] for c in ax.containers}
    floor = ax.get_ylim()[0]
    # a: mean 4 h, median 2 h; b waited 0 s, shown at the floor and written as 0
    assert tops["mean"][0] == pytest.approx(4.0) and tops["median"][0] == pytest.approx(2.0)
    assert tops["mean"][1] == pytest.approx(floor) and 0 < floor < 1
    assert [t.get_text() for t in ax.texts] == ["0", "0", "0"]
    hatches = {c.get_label(): c[0].get_hatch() for c in ax.containers}
    assert len(set(hatches.values())) == 3  # told apart without colour too


class _Doc(HTMLParser):
    """Tables (header cells, body rows), images and external references of an HTML page."""

    def __init__(self):
        super().__init__()
        self.tables, self.imgs, self.external, self._cell, self._where = [], [], [], None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self.tables.append({"header": [], "rows": []})
        elif tag in ("thead", "tbody"):
            self._where = tag
        elif tag == "tr" and self._where == "tbody":
            self.tables[-1]["rows"].append([])
        elif tag in ("th", "td"):
            self._cell = ""
        elif tag == "img":
            self.imgs.append(a.get("src", ""))
        for key in ("src", "href"):
            if key in a and not a[key].startswith("data:"):
                self.external.append(a[key])

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag in ("th", "td") and self._cell is not None:
            t = self.tables[-1]
            (t["header"] if tag == "th" else t["rows"][-1]).append(self._cell)
            self._cell = None


def parse(path) -> _Doc:
    doc = _Doc()
    doc.feed(path.read_text(encoding="utf-8"))
    doc.close()
    return doc


def test_html_report_tables_are_escaped_html_tables(tmp_path):
    evil = "<script>alert('x')</script> & co"
    table = R.Table(["QUEUE", "WAIT s"], [[evil, 1.5], ["b", None]], caption="cap <i>", note="n & m")
    page = tmp_path / "r.html"
    R.html_report("title <b>", [("heading 'q'", table, b"\x89PNG fake")], str(page))
    text = page.read_text()
    assert "<script>" not in text and "<b>" not in text and "<i>" not in text
    doc = parse(page)
    assert doc.tables == [{"header": ["QUEUE", "WAIT s"], "rows": [[evil, "1.5"], ["b", "-"]]}]
    assert doc.imgs == ["data:image/png;base64," + base64.b64encode(b"\x89PNG fake").decode()]
    assert doc.external == []
    w = len(evil)  # names left-aligned, numbers right-aligned, two spaces apart
    assert table.text().splitlines() == ["cap <i>", "QUEUE".ljust(w) + "  WAIT s", evil + "     1.5",
                                         "b".ljust(w) + "       -", "n & m"]


def test_cli_html_reports_are_self_contained_with_tables(tmp_path, capsys):
    page, plot = tmp_path / "r.html", tmp_path / "a.png"
    assert main(["simulate", "--policy", "best-fit,fgd", "--seeds", "42-43", "--quiet", "--html", str(page),
                 "--plot", str(plot)]) == 0
    capsys.readouterr()
    doc = parse(page)
    assert len(doc.tables) == 1 and doc.tables[0]["header"][:4] == ["POLICY", "SEEDS", "ALLOC@100%", "ALLOC@130%"]
    assert [r[0] for r in doc.tables[0]["rows"]] == ["best-fit", "fgd"]
    assert [r[1] for r in doc.tables[0]["rows"]] == ["2", "2"]
    assert len(doc.imgs) == 1 and doc.imgs[0].startswith("data:image/png;base64,") and doc.external == []
    assert base64.b64decode(doc.imgs[0].split(",", 1)[1]) == plot.read_bytes()

    jobs, vc, page = tmp_path / "jobs.csv", tmp_path / "vc.csv", tmp_path / "o.html"
    jobs.write_text("timestamp,duration,num_gpus,gpu_time,cluster\n0,100,8,800,a\n5,50,8,400,b&c\n")
    vc.write_text("vc,node num\na,1\n")
    assert main(["simulate", "--online", "--trace", str(jobs), "--vc-nodes", str(vc), "--period", "10",
                 "--quiet", "--html", str(page), "--json", str(tmp_path / "o.json")]) == 0
    capsys.readouterr()
    doc = parse(page)
    assert doc.tables[0]["header"][0] == "QUEUE" and "WAIT P95 s" in doc.tables[0]["header"]
    waits = {r[0]: r[5] for r in doc.tables[0]["rows"]}
    assert waits == {"a": "10.0", "b&c": "115.0"}
    assert "b&amp;c" in page.read_text()
    assert len(doc.imgs) == 2 and doc.external == []
    assert json.loads((tmp_path / "o.json").read_text())["jobs"] == 2
    assert "jobs.csv (2 jobs)" in page.read_text()


def test_without_matplotlib_a_plot_is_a_clear_error(tmp_path, monkeypatch, capsys):
    """matplotlib is imported only for a plot; without it the command says so (exit 2), and the
    table is still printed."""
    for name in ("matplotlib", "matplotlib.pyplot"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(R.ReportError, match="pip install matplotlib"):
        R.allocation_figure(summaries([42]), "t")
    assert main(["simulate", "--policy", "fgd", "--quiet", "--plot", str(tmp_path / "a.png")]) == 2
    out = capsys.readouterr()
    assert "95.29" in out.out and "plots need matplotlib" in out.err
    assert not (tmp_path / "a.png").exists()
