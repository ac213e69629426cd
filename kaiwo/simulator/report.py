"""Plots and a self-contained HTML report for ``kaiwo simulate``.

Plots are PNG files drawn with matplotlib's Agg backend (no display needed); the HTML report embeds
them as base64 data URIs next to the result tables (HTML tables), so it is one file that opens
anywhere. Each ``*_figure`` function returns the matplotlib figure (what the tests look at) and its
``*_png`` twin the PNG bytes. matplotlib is imported only when a plot is made.
"""
from __future__ import annotations

import base64
import html
import io
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np


class ReportError(RuntimeError):
    """A plot or report that cannot be made (matplotlib missing, file not writable)."""


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ReportError("plots need matplotlib (pip install matplotlib)") from e
    return plt


@contextmanager
def _new_figure(plt, *args, **kw):
    """``plt.subplots`` whose figure is closed if drawing fails (else the caller closes it)."""
    fig, axes = plt.subplots(*args, **kw)
    try:
        yield fig, axes
    except BaseException:
        plt.close(fig)
        raise


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


# Policies often coincide (fgd and frag differ by tenths of a percent), so each line also gets its
# own dash pattern and marker: they stay apart in greyscale and where one covers the other.
_STYLES = [("-", "o"), ((0, (6, 2)), "s"), ((0, (6, 2, 1, 2)), "^"), ((0, (1, 1.5)), "D"),
           ((0, (3, 1, 1, 1, 1, 1)), "v"), ((0, (10, 3)), "P"), ((0, (2, 3)), "X"), ((0, (6, 1, 1, 1)), "*")]


def line_style(i: int) -> dict:
    """Colour, dash pattern and marker of the i-th line; markers are placed at different x for
    different lines so coinciding lines still show each marker."""
    dash, marker = _STYLES[i % len(_STYLES)]
    return {"color": f"C{i % 10}", "linestyle": dash, "marker": marker, "markersize": 5}


def seed_list(seeds) -> str:
    """``42-51`` for a run of consecutive seeds, ``42,44,50-52`` otherwise."""
    seeds, out = sorted(set(int(s) for s in seeds)), []
    for s in seeds:
        if out and s == out[-1][1] + 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in out)


def offline_title(scn, summaries: list) -> str:
    """What an offline replay ran: trace file and size, cluster (node list, or AMD model, partition
    and isolation), policies and seeds."""
    trace = str(scn.trace.path).rsplit("/", 1)[-1]
    cluster = (f"{len(scn.nodes)} nodes / {scn.n_gpus} GPUs" if scn.gpu_model is None else
               f"{scn.n_gpus} {scn.gpu_model.upper()} in {scn.partition.upper()}, {scn.isolation} for fractions")
    seeds = sorted({r.seed for s in summaries for r in s.runs})
    return (f"Offline replay of {trace} ({len(scn.trace)} pods, to {100 * scn.ratio:g}% of capacity) on {cluster}\n"
            f"policies {', '.join(s.policy for s in summaries)}; "
            f"{'seed' if len(seeds) == 1 else f'{len(seeds)} seeds'} {seed_list(seeds)}")


def online_title(trace_path: str, result, nodes: int, period: float, node_scale: float = 1.0) -> str:
    """What an online replay ran: job file and count, cluster size, policy, reclaim, cycle period."""
    scale = f" (node scale {node_scale:g})" if node_scale != 1.0 else ""
    return (f"Online replay of {str(trace_path).rsplit('/', 1)[-1]} ({result.jobs} jobs) on {nodes} nodes "
            f"x 8 GPUs{scale}\npolicy {result.policy}, reclaim {result.reclaim}, a cycle every {period:g} s")


def _spread(summary):
    """Per-x minimum and maximum of a policy's seeds (None with one seed)."""
    if len(summary.runs) < 2:
        return None
    curves = np.stack([r.curve for r in summary.runs])
    ok = ~np.all(np.isnan(curves), axis=0)
    lo, hi = np.full(curves.shape[1], np.nan), np.full(curves.shape[1], np.nan)
    lo[ok], hi[ok] = np.nanmin(curves[:, ok], axis=0), np.nanmax(curves[:, ok], axis=0)
    return lo, hi


ZOOM = 85  #: the inset of the allocation plot starts at this % of arrived GPU requests


def allocation_figure(summaries: list, title: str):
    """Allocation ratio (%) against arrived GPU requests (% of capacity): per policy the mean over
    its seeds as a line, and with several seeds their minimum-maximum as a shaded band; an inset
    magnifies 85-130% (y: the values from 100% on). Returns the matplotlib figure (the caller closes it)."""
    plt = _pyplot()
    with _new_figure(plt, figsize=(9, 5.5)) as (fig, ax):
        inset = ax.inset_axes([0.07, 0.5, 0.42, 0.4])
        n_seeds = max((len(s.runs) for s in summaries), default=0)
        # the inset's y axis fits the curves from 100% arrival on, where policies differ; a poor
        # policy's ramp below would otherwise squeeze the leaders into a sliver
        plateau = []
        for i, s in enumerate(summaries):
            curve, style = s.curve(), line_style(i)
            x = list(range(len(curve)))
            band = _spread(s)
            seeds = f", {len(s.runs)} seeds" if n_seeds > 1 else ""
            ax.plot(x, curve, label=f"{s.policy}: {s.mean(130):.2f}% at 130%{seeds}", linewidth=1.5,
                    markevery=(2 + 3 * i, 20), **style)
            inset.plot(x[ZOOM:], curve[ZOOM:], linewidth=1.3, markevery=(i % 5, 5), **style)
            plateau.append(curve[100:])
            if band is not None:
                ax.fill_between(x, band[0], band[1], color=style["color"], alpha=0.2, linewidth=0)
                inset.fill_between(x[ZOOM:], band[0][ZOOM:], band[1][ZOOM:], color=style["color"], alpha=0.25,
                                   linewidth=0)
                plateau += [band[0][100:], band[1][100:]]
        ax.plot([0, 100], [0, 100], color="grey", linewidth=0.8, linestyle=":", label="everything placed")
        ax.set_xlabel("arrived GPU requests (% of GPU capacity)")
        ax.set_ylabel("GPU allocation ratio (%)" + (f", mean of {n_seeds} seeds" if n_seeds > 1 else ""))
        ax.set_title(title, fontsize=10)
        ax.set_xlim(0, 130)
        ax.set_ylim(0, 102)
        ax.grid(alpha=0.3)
        handles, _ = ax.get_legend_handles_labels()
        if any(len(s.runs) > 1 for s in summaries):
            from matplotlib.patches import Patch
            handles.append(Patch(color="grey", alpha=0.3, label="shaded: minimum to maximum over the seeds"))
        ax.legend(handles=handles, loc="lower right", fontsize=7.5)
        inset.set_xlim(ZOOM, 130)
        limits = _data_limits(np.concatenate(plateau) if plateau else [], 0.0, 101.0, pad=0.1, least=0.2)
        if limits is not None:
            inset.set_ylim(*limits)
        inset.set_title(f"{ZOOM}-130% magnified", fontsize=8)
        inset.tick_params(labelsize=7)
        inset.grid(alpha=0.3)
        return fig


def allocation_png(summaries: list, title: str) -> bytes:
    return _render(allocation_figure(summaries, title))


def _data_limits(values, lo: float, hi: float, pad: float = 0.08, least: float = 0.02):
    """Axis limits that fit the finite ``values`` with a margin (at least ``least`` wide), inside
    [lo, hi]; None when there is none."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    a, b = float(v.min()), float(v.max())
    margin = max((b - a) * pad, least)
    return max(lo, a - margin), min(hi, b + margin)


def online_figure(result, title: str):
    """GPU utilisation and Jain's fairness index over simulated time (days); the fairness axis
    spans the data (a fixed 0..1 flattens an index that stays between 0.9 and 1)."""
    plt = _pyplot()
    with _new_figure(plt, 2, 1, figsize=(9, 6), sharex=True) as (fig, (ax1, ax2)):
        days = result.times / 86400.0
        ax1.plot(days, 100 * result.utilization, linewidth=0.8)
        ax1.set_ylabel("GPU utilisation (%)")
        ax1.set_ylim(0, 102)
        ax1.set_title(title, fontsize=10)
        ax1.grid(alpha=0.3)
        ax2.plot(days, result.fairness, linewidth=0.8, color="tab:green")
        ax2.set_ylabel("Jain's fairness index")
        ax2.set_xlabel("days since the first arrival")
        limits = _data_limits(result.fairness, 0.0, 1.01)
        if limits is None:
            ax2.set_ylim(0, 1.01)
            ax2.text(0.5, 0.5, "no sample with two or more queues with demand", transform=ax2.transAxes,
                     ha="center", va="center", color="grey")
        else:
            ax2.set_ylim(*limits)
        ax2.grid(alpha=0.3)
        return fig


def online_png(result, title: str) -> bytes:
    return _render(online_figure(result, title))


def waiting_figure(result, title: str):
    """Mean, median and 95th-percentile waiting time per queue in hours, on a log axis (waits range
    from seconds to days); a zero wait, which a log axis cannot show, is written as 0 at the bottom."""
    plt = _pyplot()
    rows = [q.to_dict() for q in result.queues if q.waits]
    keys = [("waitMeanS", "mean", "C0", ""), ("waitMedianS", "median", "C1", "//"),
            ("waitP95S", "95th percentile", "C2", "..")]
    with _new_figure(plt, figsize=(9, 4.5)) as (fig, ax):
        hours = [[r[k] / 3600.0 for r in rows] for k, *_ in keys]
        positive = [h for series in hours for h in series if h > 0]
        floor = min(positive) / 3 if positive else 1 / 3600.0
        width = 0.27
        for j, ((_, label, color, hatch), series) in enumerate(zip(keys, hours)):
            xs = [i + (j - 1) * width for i in range(len(rows))]
            # bars start at the axis floor so they are drawn on a log scale
            ax.bar(xs, [max(h, floor) - floor for h in series], bottom=floor, width=width, label=label,
                   color=color, hatch=hatch, edgecolor="white", linewidth=0)
            for x, h in zip(xs, series):
                if h <= 0:
                    ax.text(x, floor, "0", ha="center", va="bottom", fontsize=7)
        ax.set_yscale("log")
        ax.set_ylim(bottom=floor)
        ax.set_xticks(list(range(len(rows))))
        ax.set_xticklabels([r["queue"] for r in rows], rotation=45, ha="right", fontsize=8)
        ax.set_ylabel("waiting time (hours, log scale)")
        ax.set_xlabel("queue (virtual cluster)")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, axis="y", which="both")
        ax.set_axisbelow(True)
        if not rows:
            ax.text(0.5, 0.5, "no job was placed", transform=ax.transAxes, ha="center", va="center", color="grey")
        return fig


def waiting_png(result, title: str) -> bytes:
    return _render(waiting_figure(result, title))


def _render(fig) -> bytes:
    plt = _pyplot()
    try:
        return _png(fig)
    finally:
        plt.close(fig)


def write_png(path: str, data: bytes) -> None:
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as e:
        raise ReportError(f"cannot write {path}: {e.strerror or e}") from None


@dataclass
class Table:
    """A result table, printed as aligned text columns and written to the HTML report as a
    ``<table>``: the first column (a name) left-aligned, the others (numbers) right-aligned; None
    shows as ``-``."""

    header: list
    rows: list
    caption: str = ""   #: a line above the table
    note: str = ""      #: a line below it

    def cells(self) -> list:
        return [[("-" if v is None else str(v)) for v in row] for row in self.rows]

    def text(self) -> str:
        cols = [[str(h) for h in self.header], *self.cells()]
        widths = [max(len(r[i]) for r in cols) for i in range(len(self.header))]
        lines = ["  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths)))
                 for r in cols]
        return "\n".join(([self.caption] if self.caption else []) + lines + ([self.note] if self.note else []))

    def html(self) -> str:
        e = html.escape
        head = "".join(f"<th>{e(str(h))}</th>" for h in self.header)
        body = "".join("<tr>" + "".join(f"<td>{e(v)}</td>" for v in row) + "</tr>" for row in self.cells())
        caption = f"<caption>{e(self.caption)}</caption>" if self.caption else ""
        note = f"<p class='note'>{e(self.note)}</p>" if self.note else ""
        return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"


_CSS = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;font-size:13px;margin:.5em 0}"
        "caption{text-align:left;font-weight:bold;padding:.3em 0}"
        "th,td{padding:.25em .7em;border-bottom:1px solid #ddd;text-align:right;white-space:nowrap}"
        "th:first-child,td:first-child{text-align:left}th{background:#f0f0f0}"
        "tbody tr:nth-child(even){background:#fafafa}.note{font-size:13px;color:#555}"
        "img{max-width:100%}h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.5em}")


def html_report(title: str, sections: list, path: str) -> None:
    """Write a self-contained HTML file (no external resource: the style is inline and the plots
    are data URIs). ``sections``: list of (heading, :class:`Table` or None, png bytes or None)."""
    e = html.escape
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
             f"<style>{_CSS}</style></head><body><h1>{e(title)}</h1>"]
    for heading, table, png in sections:
        parts.append(f"<h2>{e(heading)}</h2>")
        if table is not None:
            parts.append(table.html())
        if png:
            data = base64.b64encode(png).decode("ascii")
            parts.append(f"<img alt='{e(heading, quote=True)}' src='data:image/png;base64,{data}'>")
    parts.append("<p><small>Generated by <code>kaiwo simulate</code>. Data: Alibaba cluster-trace-gpu-v2023 "
                 "(openb) / Microsoft Philly traces; see kaiwo/data/ATTRIBUTION.md and data/README.md.</small></p></body></html>")
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(parts))
    except OSError as err:
        raise ReportError(f"cannot write {path}: {err.strerror or err}") from None
