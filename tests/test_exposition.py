"""The strict Prometheus text parser (``kaiwo_core.monitoring.exposition``) and text ingestion into the store.

The compiled parser is compared with the regular-expression reference ``tests.naive_monitoring
.naive_parse`` on random texts built from the grammar and then mutated (every sample and every
malformed line number must agree), values must equal Python's ``float`` of their token (fast path
and slow path), and hand-picked malformed lines must give the documented error, line and column.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaiwo_core.monitoring import exposition as ex
from kaiwo_core.monitoring.metrics_store import MetricsStore, StoreError
from tests.naive_monitoring import naive_parse

# ------------------------------------------------------------------------------ generators

NAMES = st.sampled_from(["m", "gpu_gfx_activity", "a:b_c", "_x9", "9bad", "bad-name", "x.y"])
LNAMES = st.sampled_from(["gpu_id", "pod", "a", "_b", "hostname", "9x", "a-b"])
LVALUES = st.one_of(
    st.sampled_from(["", "0", "node-0", 'q\\"uote', "back\\\\slash", "new\\nline", "bad\\escape",
                     "comma,=}{", "é-ü", "unterminated"]),
    st.text(alphabet="abc xyz_0-9,={}", max_size=8))
VALUES = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64).map(repr),
    st.integers(-10**20, 10**20).map(str),
    st.sampled_from(["NaN", "nan", "+Inf", "-Inf", "inf", "Infinity", "-infinity", "1e5", ".5", "3.",
                     "1E-3", "+2", "-0", "0.30000000000000004", "123456789012345678901", "1e400",
                     "abc", "1.2.3", "0x10", "+nan", "e5", ".", "+", "1e", "--1", "1_0"]))
TIMESTAMPS = st.one_of(st.none(), st.integers(-2**63 + 1, 2**63 - 1).map(str),
                       st.sampled_from(["12a", "-", "99999999999999999999", "1.5", "-9223372036854775808"]))
WS = st.sampled_from(["", " ", "\t", "  "])


@st.composite
def sample_line(draw):
    name = draw(NAMES)
    labels = draw(st.lists(st.tuples(LNAMES, LVALUES), max_size=4))
    body = ""
    if labels or draw(st.booleans()):
        parts = []
        for k, v in labels:
            quote = '"' if v != "unterminated" else ""
            parts.append(f"{draw(WS)}{k}{draw(WS)}={draw(WS)}\"{v}{quote}{draw(WS)}")
        body = "{" + ",".join(parts) + draw(st.sampled_from(["", ","])) + draw(WS) + "}"
    value = draw(VALUES)
    ts = draw(TIMESTAMPS)
    sep = draw(st.sampled_from([" ", "\t", "  ", ""]))
    line = f"{draw(WS)}{name}{body}{sep}{value}"
    if ts is not None:
        line += draw(st.sampled_from([" ", "\t"])) + ts
    return line + draw(WS)


COMMENTS = st.sampled_from(["# HELP m some text", "# TYPE m gauge", "# TYPE m counter  ", "# TYPE m bogus",
                            "# TYPE m", "# HELP", "#HELP no space", "# just a comment", "# HELP 9x text",
                            "  # TYPE m summary", "# TYPE m gauge extra", "", "   ", "# EOF"])


@st.composite
def exposition_text(draw):
    lines = draw(st.lists(st.one_of(sample_line(), COMMENTS), min_size=1, max_size=12))
    # Mutations: a random character inserted somewhere in some lines.
    for k in range(len(lines)):
        if lines[k] and draw(st.integers(0, 5)) == 0:
            pos = draw(st.integers(0, len(lines[k])))
            ch = draw(st.sampled_from(list('{}",=\\ #a1\t')))
            lines[k] = lines[k][:pos] + ch + lines[k][pos:]
    end = draw(st.sampled_from(["\n", "\r\n"]))
    return end.join(lines) + draw(st.sampled_from(["", "\n"]))


def kernel_samples(text: str):
    p = ex.parse(text)
    samples, bad = [], [e.line for e in p.errors]
    for i in range(len(p)):
        try:
            name, labels = ex.decode_key(p.key(i))
        except UnicodeDecodeError:
            bad.append(int(p.line[i]))
            continue
        ts = int(p.timestamp[i])
        samples.append((int(p.line[i]), name, labels, float(p.value[i]),
                        None if ts == ex.NO_TIMESTAMP else ts))
    return samples, sorted(bad)


def same_value(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(exposition_text())
def test_parser_matches_reference(text):
    got, got_bad = kernel_samples(text)
    ref, ref_bad = naive_parse(text)
    assert got_bad == sorted(ref_bad), text
    assert len(got) == len(ref), text
    for g, r in zip(got, ref):
        assert g[:3] == r[:3], text
        assert same_value(g[3], r[3]), (text, g, r)
        assert g[4] == r[4], text


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, width=64), st.sampled_from(["repr", "e", "f"]))
def test_values_equal_python_float(x, style):
    tok = {"repr": repr(x), "e": f"{x:.17e}", "f": f"{x:.6f}"}[style]
    tok = tok.replace("inf", "Inf")
    p = ex.parse(f"m {tok}\n")
    assert not p.errors
    assert p.value[0] == float(tok) or (math.isnan(p.value[0]) and math.isnan(float(tok)))


# ------------------------------------------------------------------------ malformed lines

MALFORMED = [
    ('m{a="1",a="2"} 1', ex.ERR_DUPLICATE_LABEL, 9),
    ("m{a=1} 1", ex.ERR_LABEL_QUOTE, 5),
    ('m{a="x} 1', ex.ERR_LABEL_UNTERMINATED, 10),
    ('m{a="\\t"} 1', ex.ERR_LABEL_ESCAPE, 6),
    ('m{a "x"} 1', ex.ERR_LABEL_EQUALS, 5),
    ('m{a="x" b="y"} 1', ex.ERR_LABEL_SEPARATOR, 9),
    ('m{9="x"} 1', ex.ERR_LABEL_NAME, 3),
    ("m-x 1", ex.ERR_NAME_CHAR, 2),
    ("1m 1", ex.ERR_NAME_START, 1),
    ("m", ex.ERR_NO_VALUE, 2),
    ("m 1.2.3", ex.ERR_VALUE, 3),
    ("m 0x1A", ex.ERR_VALUE, 3),
    ("m 1 12a", ex.ERR_TIMESTAMP, 5),
    ("m 1 99999999999999999999", ex.ERR_TIMESTAMP, 5),
    ("m 1 2 3", ex.ERR_TRAILING, 7),
    ("# TYPE m bogus", ex.ERR_TYPE_LINE, 1),
    ("# HELP", ex.ERR_HELP_LINE, 1),
]


@pytest.mark.parametrize("line,code,column", MALFORMED)
def test_malformed_line_reports_code_line_and_column(line, code, column):
    text = f"good 1\n{line}\nalso_good 2\n"
    p = ex.parse(text, source="scrape.prom")
    assert [e.code for e in p.errors] == [code]
    e = p.errors[0]
    assert (e.line, e.column) == (2, column)
    assert str(e).startswith(f"scrape.prom:2:{column}: ") and ex.ERROR_TEXT[code] in str(e)
    assert e.text == line
    # the other lines are ingested
    assert [ex.decode_key(p.key(i))[0] for i in range(len(p))] == ["good", "also_good"]


def test_too_many_labels():
    labels = ",".join(f'l{k}="v"' for k in range(ex.MAX_LABELS + 1))
    p = ex.parse(f"m{{{labels}}} 1\n")
    assert [e.code for e in p.errors] == [ex.ERR_TOO_MANY_LABELS]


def test_decode_key_escapes_and_spacing():
    assert ex.decode_key(b'm{ a = "x,y=}" , b="q\\"\\\\\\n" ,}') == ("m", {"a": "x,y=}", "b": 'q"\\\n'})
    assert ex.decode_key(b"m{}") == ("m", {})
    line = ex.format_sample("m", {"a": 'q"\\\n'}, 1.5)
    p = ex.parse(line)
    assert ex.decode_key(p.key(0)) == ("m", {"a": 'q"\\\n'}) and p.value[0] == 1.5


# ----------------------------------------------------------------------------- ingestion

def test_ingest_text_skips_bad_lines_and_interns_once():
    st_ = MetricsStore(slots=8)
    text = ('m{b="2",a="1"} 1\n'
            'm{a="1", b="2"} 9\n'        # same series, other spelling: duplicate in this scrape
            'm{a="x} 3\n'                # malformed
            'n{a="\\xff"} 4\n')
    rep = st_.ingest_text(text.encode().replace(b"\\xff", b"\xff"), 100.0)
    assert rep.samples == 1 and rep.new_series == 1 and rep.duplicates == 1
    assert sorted(e.code for e in rep.errors) == [ex.ERR_LABEL_UNTERMINATED, ex.ERR_DUPLICATE_SERIES,
                                                  ex.ERR_UTF8]
    assert [e.line for e in rep.errors] == [2, 3, 4]
    sid = st_.intern("m", {"a": "1", "b": "2"})
    assert st_.values[0, sid] == 1.0
    # next scrape: both spellings are known, in any order; the table answers in the kernel
    rep = st_.ingest_text('m{a="1", b="2"} 7\n', 160.0)
    assert rep.new_series == 0 and rep.samples == 1 and st_.values[1, sid] == 7.0
    assert st_.n_series == 1


def test_ingest_text_missing_series_are_nan_and_merge_same_timestamp():
    st_ = MetricsStore(slots=4)
    st_.ingest_text("a 1\nb 2\n", 10.0)
    st_.ingest_text("a 3\n", 20.0)
    st_.ingest_text("b 4\n", 20.0)   # second exporter scraped at the same instant: merged
    rep = st_.ingest_text("b 5\n", 20.0)
    assert rep.duplicates == 1       # b already has a sample in that slot
    a, b = st_.intern("a", {}), st_.intern("b", {})
    slots, ts = st_.ordered_slots()
    assert ts.tolist() == [10.0, 20.0]
    assert st_.values[slots[1], a] == 3.0 and st_.values[slots[1], b] == 4.0
    with pytest.raises(StoreError, match="older than the latest"):
        st_.ingest_text("a 1\n", 15.0)


def test_default_timestamp_from_samples():
    st_ = MetricsStore(slots=4)
    rep = st_.ingest_text("a 1 5000\nb 2 7000\n")
    assert rep.timestamp == 7.0


def test_ambiguous_hash_resolved_exactly():
    st_ = MetricsStore(slots=4)
    st_.ingest_text('m{x="1"} 1\nm{x="2"} 2\n', 1.0)
    one, two = st_.intern("m", {"x": "1"}), st_.intern("m", {"x": "2"})
    # Pretend the hash of m{x="1"} collided with series two: the entry becomes ambiguous.
    h = ex.parse('m{x="1"} 1\n').hash
    st_.table.insert(h, np.array([two]))
    assert ex.parse('m{x="1"} 1\n', st_.table).sid[0] == -2
    rep = st_.ingest_text('m{x="1"} 10\nm{x="2"} 20\n', 2.0)
    assert rep.samples == 2 and not rep.errors
    slot = st_.ordered_slots()[0][-1]
    assert st_.values[slot, one] == 10.0 and st_.values[slot, two] == 20.0


# ------------------------------------------------------------------------------ replay files

def test_split_scrapes_lines_and_errors():
    buf = b"# comment\n# SCRAPE 100\na 1\n# SCRAPE 160.5\na 2\nbad{\n"
    chunks = ex.split_scrapes(buf, "f.prom")
    assert [(c.timestamp, c.first_line) for c in chunks] == [(100.0, 3), (160.5, 5)]
    st_ = MetricsStore(slots=4)
    errs = []
    for c in chunks:
        errs += st_.ingest_text(c.text, c.timestamp, "f.prom", c.first_line - 1).errors
    assert [e.line for e in errs] == [6] and str(errs[0]).startswith("f.prom:6:")
    with pytest.raises(ex.ScrapeFileError, match="f.prom:3: .* not after"):
        ex.split_scrapes(b"# SCRAPE 100\na 1\n# SCRAPE 100\n", "f.prom")
    with pytest.raises(ex.ScrapeFileError, match="f.prom:2: '# SCRAPE' timestamp 'soon' is not a number"):
        ex.split_scrapes(b"# SCRAPE 1\n# SCRAPE soon\n", "f.prom")
    with pytest.raises(ex.ScrapeFileError, match="f.prom:2: malformed '# SCRAPE'"):
        ex.split_scrapes(b"# SCRAPE 1\n# SCRAPE 2 3\n", "f.prom")
    with pytest.raises(ex.ScrapeFileError, match="f.prom:1: samples before"):
        ex.split_scrapes(b"a 1\n# SCRAPE 1\n", "f.prom")
    assert ex.split_scrapes(b"a 1\n", default_timestamp=5.0)[0].timestamp == 5.0
