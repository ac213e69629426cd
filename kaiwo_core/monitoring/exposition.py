"""Strict, fast parser of the Prometheus text exposition format (version 0.0.4).

Why a compiled parser
---------------------
One scrape of a scale-M cluster (8,000 GPUs x 8 metrics of the AMD device metrics exporter) is
64,000 lines, about 8 MB. A Python loop over the lines costs hundreds of milliseconds; the Numba
kernel :func:`_parse_kernel` walks the bytes once, validates every line against the grammar below,
parses the value and the optional timestamp, hashes the series part (metric name and label set) to 64 bits and looks the hash up in an open-addressing table of series already known to the
:class:`~kaiwo_core.monitoring.metrics_store.MetricsStore`. Only lines of *new* series (first scrape, pod
churn) go through Python to decode their labels (:func:`decode_key`) and be interned, once.

Grammar (what is accepted)
--------------------------
Lines end with ``\\n`` (a trailing ``\\r`` is dropped); blank lines are skipped; leading spaces and
tabs are skipped. A line starting with ``#`` is a comment, except ``# HELP <metric> [text]`` and
``# TYPE <metric> <counter|gauge|histogram|summary|untyped>``, which are checked. A sample is::

    metric_name [ "{" [ label "=" "\\"" value "\\"" { "," label "=" ... } [","] ] "}" ] value [ timestamp ]

* metric names match ``[a-zA-Z_:][a-zA-Z0-9_:]*``, label names ``[a-zA-Z_][a-zA-Z0-9_]*``, and a
  label name may not repeat in one sample; spaces and tabs are allowed around ``{ } , =``;
* label values are double-quoted with the escapes ``\\\\``, ``\\"`` and ``\\n`` only, and must be
  UTF-8;
* at least one space or tab separates the series from the value and the value from the timestamp;
* values are decimal floats (``1``, ``-2.5``, ``.5``, ``1e-3``, ``3.``), ``NaN``, ``Inf``/``+Inf``/
  ``-Inf``/``Infinity`` (case-insensitive, as Go's ``strconv.ParseFloat`` reads them; hex floats are
  rejected);
* timestamps are optional integer milliseconds (int64).

A malformed line is reported as an :class:`ExpositionError` with its line number, column and why,
and skipped; the other lines are ingested (a broken exporter must not blind the monitor).

Exact values
------------
The kernel converts a decimal mantissa ``m`` and exponent ``e`` with one IEEE operation when
``m <= 2**53`` and ``|e| <= 22`` (both operands exact, so the result is correctly rounded, as
Python's ``float`` is). Other values (more than 15-16 significant digits, huge exponents) are flagged
and converted by Python's ``float`` on their byte span, so every value equals ``float(token)``.

Hash collisions
---------------
A known series is recognised by the 64-bit hash of its raw bytes alone, so a *new* series
whose hash equals a known one's would be taken for it: with n distinct raw keys the chance is about
n^2 / 2^65 (1e-10 for the 64,000 series of scale M). Two new series that collide with each other
are detected when they are interned together: the entry is marked ambiguous (``-2``) and both are
then resolved through an exact dictionary on their raw bytes (correct, just slower for them).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from numba import njit, types

# Error codes of the kernel and what they mean (column = 1-based byte where the problem starts).
ERR_NAME_START = 1
ERR_NAME_CHAR = 2
ERR_LABEL_NAME = 3
ERR_LABEL_EQUALS = 4
ERR_LABEL_QUOTE = 5
ERR_LABEL_ESCAPE = 6
ERR_LABEL_UNTERMINATED = 7
ERR_LABEL_SEPARATOR = 8
ERR_NO_VALUE = 9
ERR_VALUE = 10
ERR_TIMESTAMP = 11
ERR_TRAILING = 12
ERR_DUPLICATE_LABEL = 13
ERR_TYPE_LINE = 14
ERR_HELP_LINE = 15
ERR_DUPLICATE_SERIES = 16   # detected by the store: same series twice in one scrape
ERR_UTF8 = 17               # detected in Python when a new series is decoded
ERR_TOO_MANY_LABELS = 18

ERROR_TEXT = {
    ERR_NAME_START: "a sample must start with a metric name ([a-zA-Z_:])",
    ERR_NAME_CHAR: "invalid character in the metric name (expected [a-zA-Z0-9_:], '{' or a space)",
    ERR_LABEL_NAME: "expected a label name ([a-zA-Z_][a-zA-Z0-9_]*) or '}'",
    ERR_LABEL_EQUALS: "expected '=' after the label name",
    ERR_LABEL_QUOTE: "expected '\"' to open the label value",
    ERR_LABEL_ESCAPE: "invalid escape in a label value (only \\\\, \\\" and \\n are allowed)",
    ERR_LABEL_UNTERMINATED: "label value not closed before the end of the line",
    ERR_LABEL_SEPARATOR: "expected ',' or '}' after a label value",
    ERR_NO_VALUE: "expected a space and a value after the series",
    ERR_VALUE: "invalid sample value (expected a decimal float, NaN or [+-]Inf)",
    ERR_TIMESTAMP: "invalid timestamp (expected integer milliseconds that fit in int64)",
    ERR_TRAILING: "unexpected text after the timestamp",
    ERR_DUPLICATE_LABEL: "label name repeated in one sample",
    ERR_TYPE_LINE: "malformed # TYPE line (expected '# TYPE <metric> "
                   "<counter|gauge|histogram|summary|untyped>')",
    ERR_HELP_LINE: "malformed # HELP line (expected '# HELP <metric> [text]')",
    ERR_DUPLICATE_SERIES: "the same series appears twice in one scrape (the later sample is dropped)",
    ERR_UTF8: "label value is not valid UTF-8",
    ERR_TOO_MANY_LABELS: "more than 128 labels in one sample",
}

NO_TIMESTAMP = np.iinfo(np.int64).min
MAX_LABELS = 128

# Rows of the kernel's integer output [N_COLS, lines], one column per sample line.
COL_LINE, COL_KEY_START, COL_KEY_END, COL_SID, COL_VALUE_START, COL_VALUE_END, COL_SLOW, \
    COL_TIMESTAMP, COL_HASH = range(9)
N_COLS = 9


class ExpositionError(ValueError):
    """One malformed line of an exposition text.

    Attributes
    ----------
    line : int
        1-based line number (in the file, when the caller passed a line offset).
    column : int
        1-based byte column where the problem was found.
    code : int
        One of the ``ERR_*`` constants.
    text : str
        The offending line (truncated to 200 characters).
    """

    def __init__(self, line: int, column: int, code: int, text: str = "", source: str = ""):
        self.line, self.column, self.code, self.text, self.source = line, column, code, text, source
        where = f"{source}:" if source else "line "
        shown = f": {text[:200]!r}" if text else ""
        super().__init__(f"{where}{line}:{column}: {ERROR_TEXT.get(code, f'error {code}')}{shown}")

    def to_dict(self) -> dict:
        return {"line": self.line, "column": self.column, "error": ERROR_TEXT.get(self.code, ""),
                "text": self.text[:200]}


# ------------------------------------------------------------------------------ compiled kernel
# Helpers are generic ``njit`` functions: they are compiled (and cached) as part of the two
# ``_kernel`` entry points, which have explicit signatures and so compile once, at import.

@njit(cache=True)
def _is_name_start(c):
    return (65 <= c <= 90) or (97 <= c <= 122) or c == 95 or c == 58


@njit(cache=True)
def _is_name_char(c):
    return (65 <= c <= 90) or (97 <= c <= 122) or c == 95 or c == 58 or (48 <= c <= 57)


@njit(cache=True)
def _is_label_start(c):
    return (65 <= c <= 90) or (97 <= c <= 122) or c == 95


@njit(cache=True)
def _is_label_char(c):
    return (65 <= c <= 90) or (97 <= c <= 122) or c == 95 or (48 <= c <= 57)


@njit(cache=True)
def _skip_ws(buf, i, end):
    while i < end and (buf[i] == 32 or buf[i] == 9):
        i += 1
    return i


@njit(cache=True)
def _word_is(buf, start, end, word):
    """Case-insensitive comparison of buf[start:end] with a lower-case ASCII word."""
    if end - start != word.shape[0]:
        return False
    for k in range(word.shape[0]):
        c = buf[start + k]
        if 65 <= c <= 90:
            c += 32
        if c != word[k]:
            return False
    return True


_POW10 = np.array([10.0 ** k for k in range(23)])  # exact doubles 1e0 .. 1e22
_W_INF = np.frombuffer(b"inf", np.uint8).copy()
_W_INFINITY = np.frombuffer(b"infinity", np.uint8).copy()
_W_NAN = np.frombuffer(b"nan", np.uint8).copy()
_TYPES = [np.frombuffer(w, np.uint8).copy() for w in (b"counter", b"gauge", b"histogram",
                                                          b"summary", b"untyped")]
_W_TYPE = np.frombuffer(b"TYPE", np.uint8).copy()
_W_HELP = np.frombuffer(b"HELP", np.uint8).copy()


@njit(cache=True)
def _parse_value(buf, s, e, pow10, out):
    """Parse buf[s:e] as a sample value into out[0].

    Returns 0 (exact value in out[0]), 1 (valid token; Python must convert it), or -1 (invalid).
    """
    i = s
    neg = False
    if i < e and (buf[i] == 43 or buf[i] == 45):
        neg = buf[i] == 45
        i += 1
    # NaN (no sign, like Go's ParseFloat) and [+-]Inf / Infinity, case-insensitive.
    if i < e and not (48 <= buf[i] <= 57) and buf[i] != 46:
        if _word_is(buf, i, e, _W_INF) or _word_is(buf, i, e, _W_INFINITY):
            out[0] = -np.inf if neg else np.inf
            return 0
        if i == s and _word_is(buf, i, e, _W_NAN):
            out[0] = np.nan
            return 0
        return -1
    mant = np.uint64(0)
    sig = 0          # significant digits kept in mant
    dropped = False  # a non-zero digit beyond 19 significant ones: not exact here
    exp10 = 0
    ndig = 0
    while i < e and 48 <= buf[i] <= 57:
        d = buf[i] - 48
        ndig += 1
        if sig < 19:
            if sig > 0 or d != 0:
                mant = mant * np.uint64(10) + np.uint64(d)
                sig += 1
        else:
            exp10 += 1
            if d != 0:
                dropped = True
        i += 1
    if i < e and buf[i] == 46:
        i += 1
        while i < e and 48 <= buf[i] <= 57:
            d = buf[i] - 48
            ndig += 1
            if sig < 19:
                if sig > 0 or d != 0:
                    mant = mant * np.uint64(10) + np.uint64(d)
                    sig += 1
                exp10 -= 1
            elif d != 0:
                dropped = True
            i += 1
    if ndig == 0:
        return -1
    if i < e and (buf[i] == 101 or buf[i] == 69):
        i += 1
        eneg = False
        if i < e and (buf[i] == 43 or buf[i] == 45):
            eneg = buf[i] == 45
            i += 1
        if i >= e or not (48 <= buf[i] <= 57):
            return -1
        ev = 0
        while i < e and 48 <= buf[i] <= 57:
            if ev < 100000:  # beyond this the value is 0 or inf anyway; Python decides
                ev = ev * 10 + (buf[i] - 48)
            i += 1
        exp10 += -ev if eneg else ev
    if i != e:
        return -1
    if mant == 0 and not dropped:
        out[0] = -0.0 if neg else 0.0
        return 0
    if dropped or mant > np.uint64(9007199254740992) or exp10 > 22 or exp10 < -22:
        return 1
    v = float(mant)
    if exp10 >= 0:
        v = v * pow10[exp10]
    else:
        v = v / pow10[-exp10]
    out[0] = -v if neg else v
    return 0


@njit(cache=True)
def _parse_timestamp(buf, s, e, out):
    """Parse buf[s:e] as int64 milliseconds into out[0]; 0 on success, -1 if invalid."""
    i = s
    neg = False
    if i < e and buf[i] == 45:
        neg = True
        i += 1
    if i >= e or e - i > 19:
        return -1
    v = np.int64(0)
    for k in range(i, e):
        c = buf[k]
        if not (48 <= c <= 57):
            return -1
        d = np.int64(c - 48)
        # 19 digits may overflow int64: check before multiplying.
        if v > (np.int64(9223372036854775807) - d) // 10:
            return -1
        v = v * 10 + d
    out[0] = -v if neg else v
    return 0


@njit(cache=True)
def _key_hash(buf, s, e):
    """64-bit hash of buf[s:e]: 8-byte words through an xxHash64-style round, then a final mix.

    Byte-at-a-time FNV-1a costs one dependent multiply per byte (about 17 ms for the 7 MB of a
    scale-M scrape); words cut that eightfold while keeping a well-mixed 64-bit value.
    """
    p1 = np.uint64(11400714785074694791)
    p2 = np.uint64(14029467366897019727)
    h = np.uint64(2870177450012600261) ^ np.uint64(e - s)
    k = s
    while k + 8 <= e:
        w = np.uint64(0)
        for b in range(8):
            w |= np.uint64(buf[k + b]) << np.uint64(8 * b)
        w = w * p2
        w = (w << np.uint64(31)) | (w >> np.uint64(33))
        h ^= w * p1
        h = ((h << np.uint64(27)) | (h >> np.uint64(37))) * p1 + np.uint64(9650029242287828579)
        k += 8
    while k < e:
        h ^= np.uint64(buf[k]) * np.uint64(2870177450012600261)
        h = ((h << np.uint64(11)) | (h >> np.uint64(53))) * p1
        k += 1
    h ^= h >> np.uint64(33)
    h *= p2
    h ^= h >> np.uint64(29)
    h *= np.uint64(1609587929392839161)
    h ^= h >> np.uint64(32)
    if h == np.uint64(0):
        h = np.uint64(1)  # 0 marks an empty table slot
    return h


@njit(cache=True)
def _table_lookup(keys, vals, h):
    mask = np.uint64(keys.shape[0] - 1)
    i = h & mask
    while keys[i] != np.uint64(0):
        if keys[i] == h:
            return vals[i]
        i = (i + np.uint64(1)) & mask
    return -1


@njit("int64(uint64[::1], int64[::1], uint64[::1], int64[::1])", cache=True)
def _table_insert_kernel(keys, vals, hashes, sids):
    """Insert (hash, sid) pairs; a hash already present with another sid becomes ambiguous (-2).

    Returns the number of collisions found. The caller keeps the load factor below 1/2.
    """
    mask = np.uint64(keys.shape[0] - 1)
    collisions = 0
    for k in range(hashes.shape[0]):
        h = hashes[k]
        i = h & mask
        while keys[i] != np.uint64(0) and keys[i] != h:
            i = (i + np.uint64(1)) & mask
        if keys[i] == h:
            if vals[i] != sids[k]:
                vals[i] = -2
                collisions += 1
        else:
            keys[i] = h
            vals[i] = sids[k]
    return collisions


@njit(cache=True)
def _check_comment(buf, s, e, types):
    """0 if buf[s:e] (starting with '#') is a valid comment, HELP or TYPE line, else an error code."""
    i = s + 1
    j = _skip_ws(buf, i, e)
    if j == i:
        return 0  # '#HELP ...' without a space is a plain comment
    k = j
    while k < e and buf[k] != 32 and buf[k] != 9:
        k += 1
    is_type = k - j == 4 and buf[j] == 84 and buf[j + 1] == 89 and buf[j + 2] == 80 and buf[j + 3] == 69
    is_help = k - j == 4 and buf[j] == 72 and buf[j + 1] == 69 and buf[j + 2] == 76 and buf[j + 3] == 80
    if not (is_type or is_help):
        return 0
    code = ERR_TYPE_LINE if is_type else ERR_HELP_LINE
    n = _skip_ws(buf, k, e)
    if n == k or n >= e or not _is_name_start(buf[n]):
        return code
    m = n + 1
    while m < e and _is_name_char(buf[m]):
        m += 1
    if m < e and buf[m] != 32 and buf[m] != 9:
        return code
    if is_help:
        return 0
    t = _skip_ws(buf, m, e)
    if t == m:
        return code
    u = t
    while u < e and buf[u] != 32 and buf[u] != 9:
        u += 1
    ok = False
    for w in range(types.shape[0]):
        wl = 0
        while wl < types.shape[1] and types[w, wl] != 0:
            wl += 1
        if u - t == wl:
            same = True
            for q in range(wl):
                if buf[t + q] != types[w, q]:
                    same = False
                    break
            if same:
                ok = True
    if not ok or _skip_ws(buf, u, e) != e:
        return code
    return 0


# The text comes from ``np.frombuffer(bytes)``: a read-only view, so no copy of the scrape is made.
_BYTES = types.Array(types.uint8, 1, "C", readonly=True)
_PARSE_SIG = types.void(_BYTES, types.uint64[::1], types.int64[::1], types.float64[::1],
                        types.uint8[:, ::1], types.int64[:, ::1], types.float64[::1],
                        types.int64[:, ::1], types.int64[::1])


@njit(_PARSE_SIG, cache=True)
def _parse_kernel(buf, tab_keys, tab_vals, pow10, types, out_i, out_v, err, counts):
    """Parse a whole exposition text.

    Writes one column of ``out_i`` (rows ``COL_*``) and ``out_v`` per valid sample line and one row
    (line, code, column) of ``err`` per malformed line; ``counts`` gets (samples, errors).
    """
    n = buf.shape[0]
    pos = 0
    line = 0
    ns = 0
    ne = 0
    fval = np.zeros(1, np.float64)
    tsv = np.zeros(1, np.int64)
    lab_s = np.empty(MAX_LABELS, np.int64)
    lab_e = np.empty(MAX_LABELS, np.int64)
    while pos < n:
        line += 1
        end = pos
        while end < n and buf[end] != 10:
            end += 1
        nxt = end + 1
        if end > pos and buf[end - 1] == 13:
            end -= 1
        i = _skip_ws(buf, pos, end)
        code = 0
        col = 0
        if i == end:
            pos = nxt
            continue
        if buf[i] == 35:
            code = _check_comment(buf, i, end, types)
            if code != 0:
                err[ne, 0] = line
                err[ne, 1] = code
                err[ne, 2] = i - pos + 1
                ne += 1
            pos = nxt
            continue
        # ---- metric name
        ks = i
        if not _is_name_start(buf[i]):
            code = ERR_NAME_START
            col = i
        else:
            i += 1
            while i < end and _is_name_char(buf[i]):
                i += 1
            if i < end and buf[i] != 123 and buf[i] != 32 and buf[i] != 9:
                code = ERR_NAME_CHAR
                col = i
        # ---- labels
        if code == 0 and i < end and buf[i] == 123:
            i = _skip_ws(buf, i + 1, end)
            nl = 0
            while True:
                if i < end and buf[i] == 125:
                    i += 1
                    break
                if i >= end or not _is_label_start(buf[i]):
                    code = ERR_LABEL_NAME
                    col = i
                    break
                ls = i
                i += 1
                while i < end and _is_label_char(buf[i]):
                    i += 1
                if nl >= MAX_LABELS:
                    code = ERR_TOO_MANY_LABELS
                    col = ls
                    break
                # a label name may not repeat within one sample
                for q in range(nl):
                    if lab_e[q] - lab_s[q] == i - ls:
                        same = True
                        for r in range(i - ls):
                            if buf[lab_s[q] + r] != buf[ls + r]:
                                same = False
                                break
                        if same:
                            code = ERR_DUPLICATE_LABEL
                            col = ls
                            break
                if code != 0:
                    break
                lab_s[nl] = ls
                lab_e[nl] = i
                nl += 1
                i = _skip_ws(buf, i, end)
                if i >= end or buf[i] != 61:
                    code = ERR_LABEL_EQUALS
                    col = i
                    break
                i = _skip_ws(buf, i + 1, end)
                if i >= end or buf[i] != 34:
                    code = ERR_LABEL_QUOTE
                    col = i
                    break
                i += 1
                closed = False
                while i < end:
                    c = buf[i]
                    if c == 34:
                        closed = True
                        i += 1
                        break
                    if c == 92:
                        if i + 1 >= end or not (buf[i + 1] == 92 or buf[i + 1] == 34 or buf[i + 1] == 110):
                            code = ERR_LABEL_ESCAPE
                            col = i
                            break
                        i += 2
                    else:
                        i += 1
                if code != 0:
                    break
                if not closed:
                    code = ERR_LABEL_UNTERMINATED
                    col = end
                    break
                i = _skip_ws(buf, i, end)
                if i < end and buf[i] == 44:
                    i = _skip_ws(buf, i + 1, end)
                elif i < end and buf[i] == 125:
                    i += 1
                    break
                else:
                    code = ERR_LABEL_SEPARATOR
                    col = i
                    break
        ke = i
        # ---- value
        if code == 0:
            j = _skip_ws(buf, i, end)
            if j == i or j >= end:
                code = ERR_NO_VALUE
                col = i
            else:
                vs = j
                while j < end and buf[j] != 32 and buf[j] != 9:
                    j += 1
                ve = j
                status = _parse_value(buf, vs, ve, pow10, fval)
                if status < 0:
                    code = ERR_VALUE
                    col = vs
                else:
                    ts = NO_TIMESTAMP
                    t = _skip_ws(buf, ve, end)
                    if t < end:
                        te = t
                        while te < end and buf[te] != 32 and buf[te] != 9:
                            te += 1
                        if _parse_timestamp(buf, t, te, tsv) < 0:
                            code = ERR_TIMESTAMP
                            col = t
                        elif _skip_ws(buf, te, end) != end:
                            code = ERR_TRAILING
                            col = _skip_ws(buf, te, end)
                        else:
                            ts = tsv[0]
                    if code == 0:
                        h = _key_hash(buf, ks, ke)
                        out_i[COL_LINE, ns] = line
                        out_i[COL_KEY_START, ns] = ks
                        out_i[COL_KEY_END, ns] = ke
                        out_i[COL_SID, ns] = _table_lookup(tab_keys, tab_vals, h)
                        out_i[COL_VALUE_START, ns] = vs
                        out_i[COL_VALUE_END, ns] = ve
                        out_i[COL_SLOW, ns] = status
                        out_i[COL_TIMESTAMP, ns] = ts
                        out_i[COL_HASH, ns] = np.int64(h)
                        out_v[ns] = fval[0] if status == 0 else np.nan
                        ns += 1
        if code != 0:
            err[ne, 0] = line
            err[ne, 1] = code
            err[ne, 2] = col - pos + 1
            ne += 1
        pos = nxt
    counts[0] = ns
    counts[1] = ne


_TYPE_WORDS = np.zeros((len(_TYPES), max(len(w) for w in _TYPES)), np.uint8)
for _k, _w in enumerate(_TYPES):
    _TYPE_WORDS[_k, :len(_w)] = _w


# ------------------------------------------------------------------------------ Python edge

class KeyTable:
    """Open-addressing hash table: 64-bit hash of a series' raw bytes -> series id.

    Keys are uint64 (0 = empty), values int64 (``-2`` = ambiguous: two series share the hash).
    The load factor is kept below 1/2 so that probe sequences stay short.
    """

    def __init__(self, capacity: int = 1024):
        size = 1 << max(4, int(capacity * 2 - 1).bit_length())
        self.keys = np.zeros(size, np.uint64)
        self.vals = np.full(size, -1, np.int64)
        self.n = 0
        self.collisions = 0

    def insert(self, hashes: np.ndarray, sids: np.ndarray) -> None:
        hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
        sids = np.ascontiguousarray(sids, dtype=np.int64)
        if (self.n + len(hashes)) * 2 > len(self.keys):
            live = self.keys != 0
            old_k, old_v = self.keys[live], self.vals[live]
            size = 1 << int((self.n + len(hashes)) * 4 - 1).bit_length()
            self.keys = np.zeros(size, np.uint64)
            self.vals = np.full(size, -1, np.int64)
            _table_insert_kernel(self.keys, self.vals, old_k, old_v)
        self.collisions += _table_insert_kernel(self.keys, self.vals, hashes, sids)
        self.n = int(np.count_nonzero(self.keys))


@dataclass
class Parsed:
    """Samples of one exposition text, columnar.

    ``sid`` is the series id from the key table (-1: not known yet, -2: ambiguous hash);
    ``key_start``/``key_end`` delimit the series bytes (metric name and labels) in ``buf``.
    """

    buf: bytes
    line: np.ndarray        #: int64 1-based line numbers
    key_start: np.ndarray   #: int64
    key_end: np.ndarray     #: int64
    sid: np.ndarray         #: int64
    value: np.ndarray       #: float64
    timestamp: np.ndarray   #: int64 ms, NO_TIMESTAMP when absent
    hash: np.ndarray        #: uint64
    errors: list            #: ExpositionError, in line order

    def __len__(self) -> int:
        return len(self.line)

    def key(self, i: int) -> bytes:
        return self.buf[int(self.key_start[i]):int(self.key_end[i])]


def _line_text(buf: bytes, line_starts: np.ndarray | None, line: int) -> str:
    if line_starts is None:
        return ""
    s = int(line_starts[line - 1])
    e = buf.find(b"\n", s)
    return buf[s:e if e >= 0 else len(buf)].decode("utf-8", "replace").rstrip("\r")


def line_starts(buf: bytes) -> np.ndarray:
    """Byte offset of the start of every line of ``buf``."""
    arr = np.frombuffer(buf, np.uint8)
    return np.concatenate(([0], np.flatnonzero(arr == 10) + 1)).astype(np.int64)


def parse(buf: bytes | str, table: KeyTable | None = None, line_offset: int = 0,
          source: str = "") -> Parsed:
    """Parse an exposition text; malformed lines become errors, the rest samples.

    Parameters
    ----------
    buf : bytes or str
        The text (bytes are parsed as they are; a str is encoded as UTF-8 first).
    table : KeyTable, optional
        Known series; samples of known series come back with their ``sid``, others with -1.
    line_offset : int
        Added to every reported line number (for a text cut out of a larger file).
    source : str
        Name shown in error messages (e.g. a file name).

    Returns
    -------
    Parsed
    """
    if isinstance(buf, str):
        buf = buf.encode("utf-8")
    elif not isinstance(buf, bytes):
        buf = bytes(buf)
    table = table if table is not None else _EMPTY_TABLE
    arr = np.frombuffer(buf, np.uint8)
    # Every line is at most one sample or one error: the line count bounds both outputs.
    n_lines = int(np.count_nonzero(arr == 10)) + 1
    out_i = np.empty((N_COLS, n_lines), np.int64)  # column-major: each output is contiguous
    out_v = np.empty(n_lines, np.float64)
    err = np.empty((n_lines, 3), np.int64)
    counts = np.zeros(2, np.int64)
    if len(arr):
        _parse_kernel(arr, table.keys, table.vals, _POW10, _TYPE_WORDS, out_i, out_v, err, counts)
    ns, ne = int(counts[0]), int(counts[1])
    out_i, out_v = out_i[:, :ns], out_v[:ns]
    slow = np.flatnonzero(out_i[COL_SLOW] != 0)
    for k in slow:  # rare: values with more digits than the exact fast path takes
        out_v[k] = float(buf[out_i[COL_VALUE_START, k]:out_i[COL_VALUE_END, k]])
    errors = []
    if ne:
        starts = line_starts(buf)
        errors = [ExpositionError(int(l) + line_offset, int(c), int(code), _line_text(buf, starts, int(l)),
                                  source) for l, code, c in err[:ne]]
    return Parsed(buf, out_i[COL_LINE] + line_offset, out_i[COL_KEY_START],
                  out_i[COL_KEY_END], out_i[COL_SID], out_v, out_i[COL_TIMESTAMP],
                  out_i[COL_HASH].view(np.uint64), errors)


_EMPTY_TABLE = KeyTable(8)

_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"([^"\\]*(?:\\.[^"\\]*)*)"')
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}
_ESC_RE = re.compile(r"\\(.)")


def decode_key(raw: bytes) -> tuple[str, dict]:
    """(metric name, labels) of the series bytes of a sample the kernel accepted.

    Raises ``UnicodeDecodeError`` for a label value that is not UTF-8.
    """
    text = raw.decode("utf-8")
    brace = text.find("{")
    if brace < 0:
        return text, {}
    name = text[:brace]
    body = text[brace + 1:text.rindex("}")]
    if "\\" not in body:
        # No escapes, so no '"' inside values: the quotes alone delimit names and values (the
        # kernel has checked the syntax). Names are what lies between, minus ' ', ',' and '='.
        parts = body.split('"')
        return name, {parts[i].strip(" \t,="): parts[i + 1] for i in range(0, len(parts) - 1, 2)}
    return name, {k: _ESC_RE.sub(lambda m: _ESCAPES[m.group(1)], v)
                  for k, v in _LABEL_RE.findall(body)}


def escape_label_value(value: str) -> str:
    """A label value as it must appear between double quotes in the text format."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_value(value: float) -> str:
    """A sample value as the text format writes it (integers without ``.0``, NaN, +Inf/-Inf)."""
    f = float(value)
    if f != f:
        return "NaN"
    if f in (float("inf"), float("-inf")):
        return "+Inf" if f > 0 else "-Inf"
    s = repr(f)
    return s[:-2] if s.endswith(".0") else s


def format_sample(name: str, labels: dict, value: float, timestamp_ms: int | None = None) -> str:
    """One sample line (without the newline), labels in the given order."""
    body = ",".join(f'{k}="{escape_label_value(str(v))}"' for k, v in labels.items())
    text = f"{name}{{{body}}}" if labels else name
    v = format_value(value)
    return f"{text} {v}" if timestamp_ms is None else f"{text} {v} {int(timestamp_ms)}"


# ------------------------------------------------------------------------ multi-scrape files

SCRAPE_MARKER = b"# SCRAPE"
_SCRAPE_RE = re.compile(rb"^# SCRAPE[ \t]+(\S+)[ \t]*\r?$", re.M)
_SCRAPE_LOOSE_RE = re.compile(rb"^# SCRAPE\b", re.M)


class ScrapeFileError(ValueError):
    """A replay file whose ``# SCRAPE <unix-ts>`` structure is wrong (the whole file is refused)."""


@dataclass
class ScrapeChunk:
    """One scrape cut out of a replay file: its timestamp, first line number and text."""

    timestamp: float
    first_line: int     #: line number (1-based, in the file) of the first line of ``text``
    text: bytes


#: First second of the year 10000: scrape times must be dates (and milliseconds fit int64).
MAX_UNIX_SECONDS = 253402300800


def split_scrapes(buf: bytes, source: str = "", default_timestamp: float | None = None) -> list[ScrapeChunk]:
    """Cut a replay file into scrapes.

    The replay format is a sequence of exposition texts, each introduced by a line
    ``# SCRAPE <unix-seconds>`` (a float; the lines are plain comments to any other Prometheus
    parser). Timestamps must strictly increase. A file without any ``# SCRAPE`` line is one scrape
    at ``default_timestamp``; text before the first marker (other than blank and comment lines) is
    an error.
    """
    marks = list(_SCRAPE_RE.finditer(buf))
    loose = [m.start() for m in _SCRAPE_LOOSE_RE.finditer(buf)]
    if len(loose) != len(marks):
        good = {m.start() for m in marks}
        bad = next(p for p in loose if p not in good)
        bad_line = buf.count(b"\n", 0, bad) + 1
        raise ScrapeFileError(f"{source or 'input'}:{bad_line}: malformed '# SCRAPE' line "
                              "(expected '# SCRAPE <unix-seconds>')")
    if not marks:
        if default_timestamp is None:
            raise ScrapeFileError(f"{source or 'input'}: no '# SCRAPE <unix-ts>' line and no default time")
        return [ScrapeChunk(float(default_timestamp), 1, buf)]
    head = buf[:marks[0].start()]
    for k, ln in enumerate(head.split(b"\n"), start=1):
        s = ln.strip()
        if s and not s.startswith(b"#"):
            raise ScrapeFileError(f"{source or 'input'}:{k}: samples before the first '# SCRAPE' line")
    chunks = []
    line = head.count(b"\n") + 1
    prev = None
    for k, m in enumerate(marks):
        raw = m.group(1)
        try:
            ts = float(raw)
        except ValueError:
            raise ScrapeFileError(f"{source or 'input'}:{line}: '# SCRAPE' timestamp {raw.decode(errors='replace')!r} "
                                  "is not a number (expected unix seconds)") from None
        if not 0 <= ts < MAX_UNIX_SECONDS:  # NaN too; times are shown as dates and ms in int64
            raise ScrapeFileError(f"{source or 'input'}:{line}: '# SCRAPE' timestamp {raw.decode(errors='replace')} "
                                  "is not a unix time between 1970 and 9999")
        if prev is not None and ts <= prev:
            raise ScrapeFileError(f"{source or 'input'}:{line}: '# SCRAPE {raw.decode()}' is not after the "
                                  f"previous scrape ({prev:g}); timestamps must increase")
        end = marks[k + 1].start() if k + 1 < len(marks) else len(buf)
        body_start = m.end() + 1 if m.end() < len(buf) else m.end()
        chunks.append(ScrapeChunk(ts, line + 1, buf[body_start:end]))
        line += buf.count(b"\n", m.start(), end)
        prev = ts
    return chunks
