"""kaiwo_core.model.quantity (Cython) against the exact Fraction references in tests/naive.py.

Hypothesis builds quantity strings from their parts (sign, digits, dot, suffix or exponent, including
long mantissas and large exponents that take the Python-integer slow path) and arbitrary text for the
error path; compiled and reference parsers must agree on valid vs invalid, on the value and on the
reason. Hand-checked tables pin the documented examples and rounding decisions.
"""
import pickle

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from kaiwo_core.model.quantity import (QuantityError, parse_bool, parse_fraction, parse_fractions, parse_mib,
                                 parse_positive_int, parse_quantities, parse_quantity)
from tests.naive import NaiveQuantityError, naive_fraction, naive_quantities, naive_quantity

UNITS = ["cpu", "memory", "count"]
SUFFIXES = ["", "", "", "n", "u", "m", "k", "M", "G", "T", "P", "E",
            "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]
BAD_SUFFIXES = ["K", "Gx", "g", "mi", "KiB", "e", "e+", "E-", "i", ".", "..5", " ", "ü", "Gi "]

digits = st.text("0123456789", max_size=25)
long_digits = st.text("0123456789", min_size=15, max_size=60)
exponent = st.builds(lambda e, s, d: e + s + d, st.sampled_from("eE"), st.sampled_from(["", "+", "-"]),
                     st.one_of(st.text("0123456789", min_size=1, max_size=3),
                               st.text("0123456789", min_size=1, max_size=25)))


@st.composite
def quantity_strings(draw):
    """Mostly grammatical quantities, some with a bad suffix or a missing number."""
    sign = draw(st.sampled_from(["", "", "", "+", "-"]))
    whole = draw(st.one_of(digits, long_digits))
    dot = draw(st.sampled_from(["", "", "."]))
    frac = draw(st.one_of(digits, long_digits)) if dot else ""
    suffix = draw(st.one_of(st.sampled_from(SUFFIXES), exponent, st.sampled_from(BAD_SUFFIXES)))
    return sign + whole + dot + frac + suffix


@st.composite
def boundary_strings(draw):
    """Digits near 2**63 / 2**64 (the 64-bit fast path's edges), a moved decimal point, a suffix."""
    n = draw(st.one_of(st.integers(2**63 - 2**12, 2**63 + 2**12), st.integers(2**64 - 2**12, 2**64 + 2**12),
                       st.integers(0, 2**66), st.integers(10**18 - 10, 10**19 + 10)))
    text = str(n)
    cut = draw(st.integers(0, len(text)))
    text = text[:cut] + "." + text[cut:] if draw(st.booleans()) else text
    return text + draw(st.one_of(st.sampled_from(SUFFIXES), exponent))


QUANTITY_TEXT = st.one_of(
    quantity_strings(),
    boundary_strings(),
    st.text("0123456789.+-eEKMGTPinumk x\t", max_size=12),
    st.text(max_size=12),
)
QUANTITY_VALUES = st.one_of(
    QUANTITY_TEXT,
    st.integers(min_value=-10, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(), st.booleans(),
)


def reference(fn, *args):
    """``("ok", value)`` or ``("error", reason)`` from a naive reference."""
    try:
        return "ok", fn(*args)
    except NaiveQuantityError as e:
        return "error", e.reason


def compiled(fn, *args):
    try:
        return "ok", fn(*args)
    except QuantityError as e:
        return "error", e.reason


def assert_agree(got, want, value):
    assert got[0] == want[0], (value, got, want)
    if got[0] == "ok":
        assert got[1] == want[1], (value, got, want)
    else:  # reference reasons are the same text, or a prefix ("too large" + the unit)
        assert got[1].startswith(want[1]), (value, got, want)


# ------------------------------------------------------------------------------------ random, vs naive

@settings(max_examples=500, deadline=None)
@given(QUANTITY_TEXT, st.sampled_from(UNITS))
def test_quantity_matches_reference(s, unit):
    assert_agree(compiled(parse_quantity, s, unit), reference(naive_quantity, s, unit), s)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.integers(min_value=-10, max_value=2**70), st.floats(), st.booleans()),
       st.sampled_from(UNITS))
def test_numbers_match_reference(x, unit):
    assert_agree(compiled(parse_quantity, x, unit), reference(naive_quantity, x, unit), x)


@settings(max_examples=250, deadline=None)
@given(QUANTITY_TEXT)
def test_mib_matches_reference(s):
    assert_agree(compiled(parse_mib, s), reference(naive_quantity, s, "mib"), s)


@settings(max_examples=100, deadline=None)
@given(st.lists(QUANTITY_VALUES, max_size=30), st.sampled_from(UNITS))
def test_batch_matches_reference_and_scalar(values, unit):
    got, errors = parse_quantities(values, unit)
    want, bad = naive_quantities(values, unit)
    assert got.dtype == np.int64 and got.shape == (len(values),)
    assert got.tolist() == want
    assert [i for i, _ in errors] == bad
    for i, message in errors:  # the batch message is exactly the scalar error
        with pytest.raises(QuantityError) as e:
            parse_quantity(values[i], unit)
        assert message == str(e.value)


fraction_strings = st.builds(
    lambda s, w, d, f: s + w + d + f,
    st.sampled_from(["", "", "+", "-"]), st.text("0123456789", max_size=3),
    st.sampled_from(["", ".", "."]), st.text("0123456789", max_size=6))


@settings(max_examples=400, deadline=None)
@given(st.one_of(fraction_strings, st.text("0123456789.-+e ", max_size=8), st.text(max_size=6),
                 st.floats(min_value=-0.5, max_value=2.0), st.integers(-2, 3)))
def test_fraction_matches_reference(s):
    assert_agree(compiled(parse_fraction, s), reference(naive_fraction, s), s)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(fraction_strings, st.none()), max_size=30))
def test_fraction_batch_matches_scalar(values):
    got, errors = parse_fractions(values)
    bad = dict(errors)
    for i, v in enumerate(values):
        kind, want = reference(naive_fraction, v) if v is not None else ("ok", 0)
        assert (i in bad) == (kind == "error"), (v, want)
        assert got[i] == (want if kind == "ok" else 0)


# ---------------------------------------------------------------------------------- hand-checked tables

@pytest.mark.parametrize("s, unit, want", [
    ("500m", "cpu", 500),
    ("1.5", "cpu", 1500),
    ("2", "cpu", 2000),
    ("0.1", "cpu", 100),                  # exact: no float
    ("100u", "cpu", 1),                   # rounded up like Kubernetes MilliValue
    ("1n", "cpu", 1),
    ("+1", "cpu", 1000),
    ("-0", "cpu", 0),
    (".5", "cpu", 500),
    ("1.", "cpu", 1000),
    ("1.5E-2", "cpu", 15),
    ("4Gi", "memory", 4096),
    ("100M", "memory", 96),               # 95.37 MiB rounded up: never under-reserve
    ("1e3", "memory", 1),
    ("128974848", "memory", 123),
    ("1.5Gi", "memory", 1536),
    ("1.000000001Gi", "memory", 1025),    # 1024.000001024 MiB
    ("1Mi", "memory", 1),
    ("1048577", "memory", 2),
    ("0", "memory", 0),
    ("2k", "count", 2000),
    ("2", "count", 2),
    ("1Ki", "count", 1024),
    ("1000m", "count", 1),
    ("0.5Ki", "count", 512),
    ("9223372036854775807", "count", 2**63 - 1),
    ("0.1000000000000000000000000001", "cpu", 101),       # 28 significant digits: exact slow path
    ("1.0000000000000000000000000000", "cpu", 1000),      # trailing zeros are not significant
    ("1e-999999999999999999999", "cpu", 1),               # tiny but positive: rounds up
    (2, "cpu", 2000),                     # YAML numbers
    (0.5, "cpu", 500),
    (3, "memory", 1),
    (np.int64(4), "count", 4),
])
def test_quantity_table(s, unit, want):
    assert parse_quantity(s, unit) == want


@pytest.mark.parametrize("s, unit, reason", [
    ("4Gx", "memory", "unknown suffix 'Gx'"),
    ("1K", "memory", "unknown suffix 'K'"),
    ("1e", "cpu", "unknown suffix 'e'"),
    ("1.2.3", "cpu", "unknown suffix '.3'"),
    ("-1", "cpu", "must not be negative"),
    ("-1Gi", "memory", "must not be negative"),
    ("", "cpu", "empty string"),
    (" 1", "cpu", "leading or trailing whitespace"),
    ("1Gi\n", "memory", "leading or trailing whitespace"),
    ("1.5", "count", "not a whole number"),
    ("1e-99999999999", "count", "not a whole number"),
    ("abc", "cpu", "not a number"),
    ("-", "cpu", "not a number"),
    (".", "cpu", "not a number"),
    ("Gi", "memory", "not a number"),
    ("9223372036854775808", "count", "too large (more than 2**63-1)"),
    ("9223372036854775808m", "cpu", "too large (more than 2**63-1 milli-cores)"),
    ("8Ei", "count", "too large (more than 2**63-1)"),
    ("1e99999999999999999999", "memory", "too large (more than 2**63-1 MiB)"),
    ("1" * 257, "count", "longer than 256 bytes"),
    ("\ud800", "cpu", "cannot be encoded as UTF-8"),
    (float("nan"), "cpu", "not a number"),
    (True, "cpu", "expected a string or number, got bool"),
    ([1], "cpu", "expected a string or number, got list"),
    (-3, "memory", "must not be negative"),
])
def test_quantity_errors(s, unit, reason):
    with pytest.raises(QuantityError) as e:
        parse_quantity(s, unit)
    assert e.value.reason == reason
    assert e.value.value is s
    assert str(e.value) == f"invalid quantity {s!r}: {reason}"


def test_error_message_pickle_and_unit():
    with pytest.raises(QuantityError, match=r"^invalid quantity '4Gx': unknown suffix 'Gx'$"):
        parse_quantity("4Gx", "memory")
    e = pickle.loads(pickle.dumps(QuantityError("4Gx", "unknown suffix 'Gx'")))
    assert (e.value, e.reason, str(e)) == ("4Gx", "unknown suffix 'Gx'", "invalid quantity '4Gx': unknown suffix 'Gx'")
    assert isinstance(e, ValueError)
    with pytest.raises(ValueError, match="unknown unit"):
        parse_quantity("1", "bytes")
    with pytest.raises(ValueError, match="unknown unit"):
        parse_quantities(["1"], "bytes")


@pytest.mark.parametrize("s, want", [
    ("0.5", 500), ("1", 1000), ("1.0", 1000), ("0.125", 125), ("0.1", 100), (".25", 250),
    ("0.1250", 125), ("1.000", 1000), ("+0.5", 500), (0.5, 500), (1, 1000),
])
def test_fraction_table(s, want):
    assert parse_fraction(s) == want


@pytest.mark.parametrize("s, reason", [
    ("1.5", "must be between 0.1 and 1.0"),
    ("0", "must be between 0.1 and 1.0"),
    ("0.05", "must be between 0.1 and 1.0"),
    ("0.0999", "must be between 0.1 and 1.0"),
    ("1.0001", "must be between 0.1 and 1.0"),
    ("-0.5", "must be between 0.1 and 1.0"),
    ("0.1234", "more than milli precision (at most 3 decimals)"),
    ("abc", "not a number"),
    ("500m", "not a number"),
    ("5e-1", "not a number"),
    ("", "empty string"),
    (" 0.5", "leading or trailing whitespace"),
])
def test_fraction_errors(s, reason):
    with pytest.raises(QuantityError) as e:
        parse_fraction(s)
    assert e.value.reason == reason
    assert str(e.value) == f"invalid kaiwo.ai/gpu-fraction {s!r}: {reason}"


def test_batches():
    values, errors = parse_quantities(["1", "500m", None, "x", 2, "4Gx"], "cpu")
    assert values.tolist() == [1000, 500, 0, 0, 2000, 0]
    assert errors == [(3, "invalid quantity 'x': not a number"),
                      (5, "invalid quantity '4Gx': unknown suffix 'Gx'")]
    values, errors = parse_quantities(("4Gi", "100M"), "memory")   # any iterable
    assert values.tolist() == [4096, 96] and errors == []
    assert parse_quantities([], "count")[0].shape == (0,)
    values, errors = parse_fractions(["0.5", None, "1.5", 1])
    assert values.tolist() == [500, 0, 0, 1000]
    assert errors == [(2, "invalid kaiwo.ai/gpu-fraction '1.5': must be between 0.1 and 1.0")]


@pytest.mark.parametrize("s, want", [("4000", 4000), ("4Gi", 4096), ("16G", 15259), ("4e3", 4000),
                                     ("1k", 1), (512, 512)])
def test_mib(s, want):
    assert parse_mib(s) == want


@pytest.mark.parametrize("s, reason", [
    ("0", "must be greater than 0"),
    ("4000.5", "a number without a unit suffix is MiB and must be whole"),
    ("-1", "must not be negative"),
    ("4GB", "unknown suffix 'GB'"),
])
def test_mib_errors(s, reason):
    with pytest.raises(QuantityError, match="kaiwo.ai/gpu-memory") as e:
        parse_mib(s)
    assert e.value.reason == reason


@pytest.mark.parametrize("s, want", [("1", 1), ("2", 2), ("08", 8), (3, 3), (2.0, 2)])
def test_positive_int(s, want):
    assert parse_positive_int(s, "kaiwo.ai/gang-min-members") == want


@pytest.mark.parametrize("s, reason", [
    ("0", "must be at least 1"), ("", "empty string"), ("abc", "not a whole number (decimal digits only)"),
    ("-1", "not a whole number (decimal digits only)"), ("1.5", "not a whole number (decimal digits only)"),
    (" 2", "leading or trailing whitespace"), ("9" * 20, "too large (more than 2**63-1)"),
    (0, "must be at least 1"), (True, "expected an integer, got bool"),
])
def test_positive_int_errors(s, reason):
    with pytest.raises(QuantityError) as e:
        parse_positive_int(s, "kaiwo.ai/gang-min-members")
    assert e.value.reason == reason
    assert str(e.value).startswith("invalid kaiwo.ai/gang-min-members ")


@pytest.mark.parametrize("s, want", [("true", True), ("False", False), ("TRUE", True), (True, True)])
def test_bool(s, want):
    assert parse_bool(s, "kaiwo.ai/gpu-sharing") is want


@pytest.mark.parametrize("s", ["yes", "1", "", " true", None, 1])
def test_bool_errors(s):
    with pytest.raises(QuantityError, match="kaiwo.ai/gpu-sharing"):
        parse_bool(s, "kaiwo.ai/gpu-sharing")
