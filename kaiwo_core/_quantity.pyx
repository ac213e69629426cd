# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, embedsignature=True
"""Kubernetes quantity and Kaiwo annotation parsing (compiled core of :mod:`kaiwo_core.model.quantity`).

Design
------
*Exact integer arithmetic.* A quantity string is scanned once, byte by byte, over its UTF-8 buffer
(no regex, no ``Decimal``, no float). The scan yields ``value = mantissa * 10**exp10 * 2**bin2``
with an integer mantissa (leading and trailing zeros folded into the exponent), so ``0.1`` cpu is
exactly 100 milli-cores and ``1.000000001Gi`` is exactly ``1073741825.07...`` bytes. Conversion to the
output unit is one integer division ``ceil(num / den)`` on 64-bit integers. When a value does not fit
that fast path (more than 19 significant digits, or an intermediate product above 2**64) the same
formula is evaluated with Python integers, so the result never depends on the path taken.

*Round up, never under-reserve.* Conversions round towards +infinity: ``100u`` cpu is 1 milli-core
(Kubernetes ``MilliValue``), ``100M`` memory is 96 MiB (95.37 rounded up). Counts (``unit="count"``)
must be whole; they are never rounded.

*Strict grammar.* Kubernetes ``resource.Quantity`` grammar::

    quantity ::= [sign] number [suffix]
    number   ::= digits | digits "." [digits] | "." digits
    suffix   ::= "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei"            (binary, 2**10k)
               | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E" (decimal SI)
               | ("e" | "E") [sign] digits                           (decimal exponent)

Differences from the Go parser, all rejections of inputs Go reads as 0 or errors on anyway: at least
one digit is required (Go reads ``"-"`` and ``"."`` as 0), surrounding whitespace is an error, inputs
longer than 256 bytes are rejected, negative values are rejected (Kaiwo requests and capacities are
never negative; ``-0`` is 0).

*Errors never stop a batch.* Scalar functions raise :class:`QuantityError`; the batch functions
(:func:`parse_quantities`, :func:`parse_fractions`) return 0 for a bad entry plus a list of
``(index, message)``, so one malformed pod never holds back the rest of the column.
"""
import numpy as np

cimport cython
from libc.stdint cimport int64_t, uint64_t, INT64_MAX, UINT64_MAX

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object s, Py_ssize_t* size) except NULL
    bint PyUnicode_CheckExact(object o)
    bint PyUnicode_Check(object o)
    bint PyUnicode_IS_ASCII(object o)


class QuantityError(ValueError):
    """A quantity or annotation value that cannot be read.

    Attributes
    ----------
    value : object
        The offending input, as given.
    reason : str
        Why it was rejected, e.g. ``"unknown suffix 'Gx'"``.
    field : str
        What was being parsed (``"quantity"``, ``"kaiwo.ai/gpu-fraction"``, ...).
    """

    def __init__(self, value, reason, field="quantity"):
        self.value = value
        self.reason = reason
        self.field = field
        super().__init__(f"invalid {field} {value!r}: {reason}")

    def __reduce__(self):
        return (type(self), (self.value, self.reason, self.field))


# ------------------------------------------------------------------------------------------ constants

cdef enum:
    MAX_LEN = 256            # longest accepted input, in UTF-8 bytes
    EXP_CLAMP = 1000000      # |explicit exponent| saturates here (already far past any int64 result)
    SLOW_E_CLAMP = 700       # the slow path clamps the total decimal exponent to +-this (_scale_exact)

cdef enum:                   # units
    U_CPU = 0
    U_MEMORY = 1
    U_COUNT = 2
    U_MIB = 3                # parse_mib: plain number = MiB, SI/binary suffix = bytes

cdef enum:                   # result codes
    OK = 0
    E_EMPTY = 1
    E_SPACE = 2
    E_TOOLONG = 3
    E_NAN = 4
    E_SUFFIX = 5
    E_NEGATIVE = 6
    E_OVERFLOW = 7
    E_NOTWHOLE = 8
    E_RANGE = 9
    E_PRECISION = 10
    E_TYPE = 11
    E_ZERO = 12
    E_ENCODING = 13
    SLOW = 100               # internal: redo with Python integers

cdef enum:                   # kind of suffix
    K_NONE = 0
    K_SI = 1
    K_BINARY = 2
    K_EXPONENT = 3

cdef uint64_t[20] POW10
POW10[0] = 1
for _i in range(1, 20):
    POW10[_i] = POW10[_i - 1] * 10

_UNITS = {"cpu": U_CPU, "memory": U_MEMORY, "count": U_COUNT}
_UNIT_NAMES = {U_CPU: "milli-cores", U_MEMORY: "MiB", U_COUNT: "", U_MIB: "MiB"}


cdef int _unit_code(str unit) except -1:
    try:
        return _UNITS[unit]
    except (KeyError, TypeError):
        raise ValueError(f"unknown unit {unit!r}: expected 'cpu', 'memory' or 'count'") from None


# --------------------------------------------------------------------------------------------- scanning

cdef struct QScan:
    bint neg            # leading '-'
    bint big            # mantissa has more than fits in uint64: slow path
    uint64_t mant       # significant digits, leading/trailing zeros removed
    int64_t exp10       # decimal exponent of the mantissa (trailing zeros, fraction digits)
    int64_t sexp        # decimal exponent of the suffix (SI or explicit), saturated
    int64_t bin2        # binary exponent of the suffix
    int kind            # K_NONE / K_SI / K_BINARY / K_EXPONENT
    Py_ssize_t ds       # number starts here (after the sign) ...
    Py_ssize_t de       # ... and ends here (exclusive); the suffix starts at de


cdef inline bint _is_space(char c) noexcept nogil:
    return c == c' ' or c == b'\t' or c == b'\n' or c == b'\r' or c == b'\v' or c == b'\f'


cdef inline bint _is_digit(char c) noexcept nogil:
    return c'0' <= c <= c'9'


cdef int _scan_quantity(const char* p, Py_ssize_t n, QScan* q) noexcept nogil:
    """Scan ``p[:n]`` against the quantity grammar; fill ``q``; return OK or an error code."""
    cdef Py_ssize_t i = 0
    cdef int ndig = 0
    cdef int64_t zeros = 0, e = 0, nsig = 0
    cdef uint64_t m = 0, d, p10
    cdef bint frac = False, eneg = False
    cdef char c
    q.neg = False
    q.big = False
    q.exp10 = 0
    q.sexp = 0
    q.bin2 = 0
    q.kind = K_NONE
    if n == 0:
        return E_EMPTY
    if n > MAX_LEN:
        return E_TOOLONG
    if _is_space(p[0]) or _is_space(p[n - 1]):
        return E_SPACE
    if p[0] == c'-' or p[0] == c'+':
        q.neg = p[0] == c'-'
        i = 1
    q.ds = i
    # mantissa: digits [. digits]; trailing zeros are counted, only multiplied in before a nonzero digit
    while i < n:
        c = p[i]
        if _is_digit(c):
            ndig += 1
            if frac:
                q.exp10 -= 1
            d = <uint64_t>(c - c'0')
            if d == 0:
                if m != 0 or q.big:
                    zeros += 1
            elif not q.big:
                nsig += zeros + 1             # digits of m after this one; <= 19 always fits
                if nsig > 19:
                    q.big = True
                else:
                    m = m * POW10[zeros + 1] + d
                    zeros = 0
        elif c == c'.' and not frac:
            frac = True
        else:
            break
        i += 1
    q.de = i
    if ndig == 0:
        return E_NAN
    q.mant = m
    q.exp10 += zeros
    # suffix
    cdef Py_ssize_t rem = n - i
    if rem == 0:
        return OK
    c = p[i]
    if rem == 1:
        q.kind = K_SI
        if c == c'm':
            q.sexp = -3
        elif c == c'k':
            q.sexp = 3
        elif c == c'M':
            q.sexp = 6
        elif c == c'G':
            q.sexp = 9
        elif c == c'T':
            q.sexp = 12
        elif c == c'P':
            q.sexp = 15
        elif c == c'E':
            q.sexp = 18
        elif c == c'u':
            q.sexp = -6
        elif c == c'n':
            q.sexp = -9
        else:
            return E_SUFFIX
        return OK
    if rem == 2 and p[i + 1] == c'i':
        q.kind = K_BINARY
        if c == c'K':
            q.bin2 = 10
        elif c == c'M':
            q.bin2 = 20
        elif c == c'G':
            q.bin2 = 30
        elif c == c'T':
            q.bin2 = 40
        elif c == c'P':
            q.bin2 = 50
        elif c == c'E':
            q.bin2 = 60
        else:
            return E_SUFFIX
        return OK
    if c != c'e' and c != c'E':
        return E_SUFFIX
    q.kind = K_EXPONENT
    i += 1
    if p[i] == c'-' or p[i] == c'+':
        eneg = p[i] == c'-'
        i += 1
    if i >= n:
        return E_SUFFIX
    while i < n:
        c = p[i]
        if not _is_digit(c):
            return E_SUFFIX
        if e < EXP_CLAMP:
            e = e * 10 + (c - c'0')
        i += 1
    if e > EXP_CLAMP:
        e = EXP_CLAMP
    q.sexp = -e if eneg else e
    return OK


cdef int _scale_fast(uint64_t mant, int64_t e, int64_t b, bint whole, int64_t* out) noexcept nogil:
    """``out = ceil(mant * 10**e * 2**b)`` in 64-bit integers.

    ``whole``: the result must be exact (E_NOTWHOLE otherwise). Returns SLOW when an intermediate
    does not fit, so the caller redoes it exactly with Python integers.
    """
    cdef uint64_t num = mant, den = 1, qt, r
    cdef bint tiny = False
    if mant == 0:
        out[0] = 0
        return OK
    if e > 0:
        if e > 19 or num > UINT64_MAX // POW10[e]:
            return SLOW
        num *= POW10[e]
    if b > 0:
        if b >= 64 or num > (UINT64_MAX >> b):
            return SLOW
        num <<= b
    if e < 0:
        if e < -19:
            tiny = True           # den >= 1e20 > num: 0 < value < 1
        else:
            den = POW10[-e]
    if b < 0 and not tiny:
        if b <= -64 or den > (UINT64_MAX >> (-b)):
            tiny = True
        else:
            den <<= (-b)
    if tiny:
        if whole:
            return E_NOTWHOLE
        out[0] = 1
        return OK
    if den == 1:
        qt = num
        r = 0
    elif b < 0 and e >= 0:    # den = 2**-b: shift instead of a 64-bit division
        qt = num >> (-b)
        r = num & (den - 1)
    else:
        qt = num // den
        r = num - qt * den
    if r != 0:
        if whole:
            return E_NOTWHOLE
        qt += 1                   # cannot wrap: den >= 2 here, so qt <= UINT64_MAX / 2
    if qt > <uint64_t>INT64_MAX:
        return E_OVERFLOW
    out[0] = <int64_t>qt
    return OK


cdef inline void _unit_exponents(const QScan* q, int unit, int64_t* e, int64_t* b, bint* whole) noexcept nogil:
    """Exponents of the conversion from the scanned value to ``unit``."""
    e[0] = q.exp10 + q.sexp
    b[0] = q.bin2
    whole[0] = False
    if unit == U_CPU:
        e[0] += 3
    elif unit == U_MEMORY:
        b[0] -= 20
    elif unit == U_COUNT:
        whole[0] = True
    elif unit == U_MIB:
        if q.kind == K_SI or q.kind == K_BINARY:
            b[0] -= 20            # bytes -> MiB, rounded up
        else:
            whole[0] = True       # a plain number is MiB already


cdef int _quantity_c(const char* p, Py_ssize_t n, int unit, QScan* q, int64_t* out) noexcept nogil:
    """Scan and convert; returns OK, an error code, or SLOW (result needs Python integers)."""
    cdef int code = _scan_quantity(p, n, q)
    cdef int64_t e, b
    cdef bint whole
    if code != OK:
        return code
    if q.neg and (q.mant != 0 or q.big):
        return E_NEGATIVE
    if q.big:
        return SLOW
    _unit_exponents(q, unit, &e, &b, &whole)
    code = _scale_fast(q.mant, e, b, whole, out)
    if code == OK and unit == U_MIB and out[0] == 0:
        return E_ZERO
    return code


cdef int _scale_exact(object num, int64_t e, int64_t b, bint whole, int unit, int64_t* out) except -1:
    """Python-integer twin of :func:`_scale_fast` (any size). ``num`` is a non-negative int."""
    cdef object den = 1, qt, r, ten = 10      # Python ints throughout (10 ** e must not become C pow)
    if num == 0:
        out[0] = 0
        return E_ZERO if unit == U_MIB else OK
    # Clamping keeps every result: num < 10**260 (input length cap) and |b| <= 80, so a total
    # exponent >= 700 always overflows int64 and one <= -700 always gives a value in (0, 1).
    if e > SLOW_E_CLAMP:
        e = SLOW_E_CLAMP
    elif e < -SLOW_E_CLAMP:
        e = -SLOW_E_CLAMP
    if e > 0:
        num = num * ten ** e
    else:
        den = ten ** (-e)
    if b > 0:
        num = num << b
    else:
        den = den << (-b)
    qt, r = divmod(num, den)
    if r:
        if whole:
            return E_NOTWHOLE
        qt += 1
    if qt > INT64_MAX:
        return E_OVERFLOW
    out[0] = qt
    return OK


cdef int _quantity_slow(const char* p, QScan* q, int unit, int64_t* out) except -1:
    """Exact conversion of a scanned quantity whose fast path did not fit in 64 bits."""
    cdef bytes digits = p[q.ds:q.de]
    cdef int64_t e, b
    cdef bint whole
    ip, _, fp = digits.partition(b".")
    num = int((ip + fp) or b"0")
    _unit_exponents(q, unit, &e, &b, &whole)
    e = e - q.exp10 - len(fp)        # exponent of the full digit string instead of the mantissa
    return _scale_exact(num, e, b, whole, unit, out)


cdef str _reason(int code, int unit, object suffix=None):
    if code == E_EMPTY:
        return "empty string"
    if code == E_SPACE:
        return "leading or trailing whitespace"
    if code == E_TOOLONG:
        return f"longer than {MAX_LEN} bytes"
    if code == E_NAN:
        return "not a number"
    if code == E_SUFFIX:
        return f"unknown suffix {suffix!r}"
    if code == E_NEGATIVE:
        return "must not be negative"
    if code == E_OVERFLOW:
        name = _UNIT_NAMES[unit]
        return "too large (more than 2**63-1" + (f" {name})" if name else ")")
    if code == E_NOTWHOLE:
        if unit == U_MIB:
            return "a number without a unit suffix is MiB and must be whole"
        return "not a whole number"
    if code == E_RANGE:
        return "must be between 0.1 and 1.0"
    if code == E_PRECISION:
        return "more than milli precision (at most 3 decimals)"
    if code == E_ZERO:
        return "must be greater than 0"
    if code == E_ENCODING:
        return "cannot be encoded as UTF-8"
    return f"error {code}"


cdef object _suffix_of(const char* p, Py_ssize_t n, QScan* q):
    return p[q.de:n].decode("utf-8", "replace")


cdef int _quantity_any(object value, int unit, int64_t* out, list why) except -1:
    """Parse one value of any accepted type. Returns OK or an error code; ``why`` receives
    ``[reason]`` for codes whose reason needs the input (suffix) or the type."""
    cdef Py_ssize_t n
    cdef const char* p
    cdef QScan q
    cdef int code
    if PyUnicode_Check(value):
        try:
            p = PyUnicode_AsUTF8AndSize(value, &n)
        except UnicodeError:
            return E_ENCODING
        code = _quantity_c(p, n, unit, &q, out)
        if code == SLOW:
            code = _quantity_slow(p, &q, unit, out)
        if code == E_SUFFIX:
            why.append(_reason(code, unit, _suffix_of(p, n, &q)))
        return code
    if isinstance(value, bool) or isinstance(value, np.bool_):
        why.append(f"expected a string or number, got {type(value).__name__}")
        return E_TYPE
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return E_NAN
        return _quantity_any(repr(float(value)), unit, out, why)
    try:
        iv = value.__index__()
    except (AttributeError, TypeError):
        why.append(f"expected a string or number, got {type(value).__name__}")
        return E_TYPE
    if iv < 0:
        return E_NEGATIVE
    cdef int64_t e = 3 if unit == U_CPU else 0
    cdef int64_t b = -20 if unit == U_MEMORY else 0
    return _scale_exact(iv, e, b, unit == U_COUNT or unit == U_MIB, unit, out)


# ------------------------------------------------------------------------------------------ fractions

cdef int _fraction_c(const char* p, Py_ssize_t n, int64_t* out) noexcept nogil:
    """Milli-units of a plain decimal in [0.1, 1.0] with at most milli precision."""
    cdef Py_ssize_t i = 0
    cdef int ndig = 0, nfrac = 0
    cdef int64_t ip = 0, milli
    cdef bint neg = False, frac = False, extra = False
    cdef char c
    if n == 0:
        return E_EMPTY
    if n > MAX_LEN:
        return E_TOOLONG
    if _is_space(p[0]) or _is_space(p[n - 1]):
        return E_SPACE
    if p[0] == c'-' or p[0] == c'+':
        neg = p[0] == c'-'
        i = 1
    while i < n:
        c = p[i]
        if _is_digit(c):
            ndig += 1
            if not frac:
                if ip < 10:                       # saturate: anything >= 2 is out of range anyway
                    ip = ip * 10 + (c - c'0')
            else:
                nfrac += 1
                if nfrac <= 3:
                    ip = ip * 10 + (c - c'0')     # ip becomes milli after 3 fraction digits
                elif c != c'0':
                    extra = True
        elif c == c'.' and not frac:
            frac = True
            if ip > 10:
                ip = 10
        else:
            return E_NAN
        i += 1
    if ndig == 0:
        return E_NAN
    milli = ip
    while nfrac < 3:
        milli *= 10
        nfrac += 1
    # exact value is milli/1000 (+ something in (0, 0.001) if extra)
    if (neg and (milli != 0 or extra)) or milli < 100 or milli > 1000 or (milli == 1000 and extra):
        return E_RANGE
    if extra:
        return E_PRECISION
    out[0] = milli
    return OK


cdef int _fraction_any(object value, int64_t* out, list why) except -1:
    cdef Py_ssize_t n
    cdef const char* p
    if PyUnicode_Check(value):
        try:
            p = PyUnicode_AsUTF8AndSize(value, &n)
        except UnicodeError:
            return E_ENCODING
        return _fraction_c(p, n, out)
    if isinstance(value, bool) or isinstance(value, np.bool_):
        why.append(f"expected a string or number, got {type(value).__name__}")
        return E_TYPE
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return E_NAN
        s = repr(float(value))
        if "e" in s:                      # |x| < 1e-4 or >= 1e16: out of range
            return E_RANGE
        return _fraction_any(s, out, why)
    try:
        iv = value.__index__()
    except (AttributeError, TypeError):
        why.append(f"expected a string or number, got {type(value).__name__}")
        return E_TYPE
    if iv != 1:
        return E_RANGE
    out[0] = 1000
    return OK


# ---------------------------------------------------------------------------------------- public API

def parse_quantity(value, str unit, str field="quantity"):
    """Parse a Kubernetes quantity into an integer in ``unit``.

    ``unit``: ``"cpu"`` (milli-cores), ``"memory"`` (MiB, from bytes) or ``"count"`` (whole number).
    Rounds up; raises :class:`QuantityError`. See :func:`kaiwo_core.model.quantity.parse_quantity`.
    """
    cdef int u = _unit_code(unit)
    cdef int64_t out = 0
    cdef list why = []
    cdef int code = _quantity_any(value, u, &out, why)
    if code != OK:
        raise QuantityError(value, why[0] if why else _reason(code, u), field)
    return out


def parse_quantities(values, str unit, str field="quantity"):
    """Parse a column of quantities; returns ``(int64 array, [(index, message), ...])``.

    ``None`` gives 0; a bad entry gives 0 and one error. See :func:`kaiwo_core.model.quantity.parse_quantities`.
    """
    cdef int u = _unit_code(unit)
    cdef list vals = values if type(values) is list else list(values)
    cdef Py_ssize_t i, n = len(vals), slen
    cdef object arr = np.zeros(n, dtype=np.int64)
    cdef int64_t[::1] res = arr
    cdef list errors = []
    cdef list why = []
    cdef int code
    cdef int64_t v
    cdef const char* p
    cdef QScan q
    cdef object item
    for i in range(n):
        item = vals[i]
        v = 0
        if PyUnicode_CheckExact(item):
            if PyUnicode_IS_ASCII(item):   # non-ASCII input is invalid; _quantity_any reports it
                p = PyUnicode_AsUTF8AndSize(item, &slen)
                code = _quantity_c(p, slen, u, &q, &v)
                if code == OK:
                    res[i] = v
                    continue
                if code == SLOW:
                    code = _quantity_slow(p, &q, u, &v)
                    if code == OK:
                        res[i] = v
                        continue
                del why[:]
                if code == E_SUFFIX:
                    why.append(_reason(code, u, _suffix_of(p, slen, &q)))
                errors.append((i, str(QuantityError(item, why[0] if why else _reason(code, u), field))))
                continue
        elif item is None:
            continue
        del why[:]
        code = _quantity_any(item, u, &v, why)
        if code == OK:
            res[i] = v
        else:
            errors.append((i, str(QuantityError(item, why[0] if why else _reason(code, u), field))))
    return arr, errors


def parse_fraction(value, str field="kaiwo.ai/gpu-fraction"):
    """Milli-GPU share of a ``kaiwo.ai/gpu-fraction`` value (``"0.5"`` -> 500), in [100, 1000].

    See :func:`kaiwo_core.model.quantity.parse_fraction`.
    """
    cdef int64_t out = 0
    cdef list why = []
    cdef int code = _fraction_any(value, &out, why)
    if code != OK:
        raise QuantityError(value, why[0] if why else _reason(code, U_COUNT), field)
    return out


def parse_fractions(values, str field="kaiwo.ai/gpu-fraction"):
    """Column version of :func:`parse_fraction`; ``None`` gives 0. Returns ``(array, errors)``."""
    cdef list vals = values if type(values) is list else list(values)
    cdef Py_ssize_t i, n = len(vals), slen
    cdef object arr = np.zeros(n, dtype=np.int64)
    cdef int64_t[::1] res = arr
    cdef list errors = []
    cdef list why = []
    cdef int code
    cdef int64_t v
    cdef const char* p
    cdef object item
    for i in range(n):
        item = vals[i]
        if item is None:
            continue
        v = 0
        if PyUnicode_CheckExact(item) and PyUnicode_IS_ASCII(item):
            p = PyUnicode_AsUTF8AndSize(item, &slen)
            code = _fraction_c(p, slen, &v)
        else:
            del why[:]
            code = _fraction_any(item, &v, why)
        if code == OK:
            res[i] = v
        else:
            errors.append((i, str(QuantityError(item, why[0] if why else _reason(code, U_COUNT), field))))
    return arr, errors


def parse_positive_int(value, str name):
    """A decimal integer >= 1 (``"2"`` -> 2) for annotation ``name``; raises :class:`QuantityError`."""
    if isinstance(value, bool) or isinstance(value, np.bool_):
        raise QuantityError(value, f"expected an integer, got {type(value).__name__}", name)
    if isinstance(value, str):
        if not value:
            raise QuantityError(value, "empty string", name)
        if len(value) > MAX_LEN:
            raise QuantityError(value, f"longer than {MAX_LEN} bytes", name)
        if value != value.strip(" \t\n\r\v\f"):
            raise QuantityError(value, "leading or trailing whitespace", name)
        if not (value.isascii() and value.isdigit()):
            raise QuantityError(value, "not a whole number (decimal digits only)", name)
        iv = int(value)
    elif isinstance(value, float):
        if not value.is_integer():
            raise QuantityError(value, "not a whole number", name)
        iv = int(value)
    else:
        try:
            iv = value.__index__()
        except (AttributeError, TypeError):
            raise QuantityError(value, f"expected an integer, got {type(value).__name__}", name) from None
    if iv < 1:
        raise QuantityError(value, "must be at least 1", name)
    if iv > INT64_MAX:
        raise QuantityError(value, "too large (more than 2**63-1)", name)
    return iv


def parse_mib(value, str field="kaiwo.ai/gpu-memory"):
    """MiB for ``kaiwo.ai/gpu-memory``: a plain number is MiB (``"4000"``), a suffixed quantity is
    bytes (``"4Gi"`` -> 4096, ``"16G"`` -> 15259, rounded up). Must be > 0.
    """
    cdef int64_t out = 0
    cdef list why = []
    cdef int code = _quantity_any(value, U_MIB, &out, why)
    if code == OK and out == 0:
        code = E_ZERO
    if code != OK:
        raise QuantityError(value, why[0] if why else _reason(code, U_MIB), field)
    return out


def parse_bool(value, str name):
    """``"true"``/``"false"`` (any case) for annotation ``name``; raises :class:`QuantityError`."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        low = value.lower()
        if low == "true":
            return True
        if low == "false":
            return False
        raise QuantityError(value, "expected 'true' or 'false'", name)
    raise QuantityError(value, f"expected 'true' or 'false', got {type(value).__name__}", name)
