"""Kubernetes quantities and Kaiwo annotation values, parsed exactly into integers.

Every resource amount in Kaiwo is an integer in a fixed unit: CPU in milli-cores, memory in MiB,
GPU shares in milli-GPU, counts as plain integers. This module turns the strings found in manifests
(``"500m"``, ``"4Gi"``, ``"0.5"``) into those integers. The work is done by the Cython module
``kaiwo_core._quantity``; this module is its documented public face.

Design
------
* **Exact.** Strings are scanned byte by byte into ``mantissa * 10**e * 2**b`` with an integer
  mantissa; no float, no ``Decimal``. ``"0.1"`` cpu is exactly 100 milli-cores.
* **Round up, never under-reserve.** A value that is not a whole number of the output unit is rounded
  towards +infinity (``"100M"`` memory -> 96 MiB, ``"100u"`` cpu -> 1 milli-core, as Kubernetes'
  ``MilliValue``). Counts are never rounded: ``"1.5"`` as a count is an error.
* **Strict.** The Kubernetes ``resource.Quantity`` grammar, with at least one digit, no surrounding
  whitespace, at most 256 bytes; negative values are rejected (``"-0"`` is 0).
* **Errors name the value and why.** Scalar functions raise :class:`QuantityError` (a
  :class:`ValueError`) with ``value``, ``reason`` and ``field``; the column functions
  :func:`parse_quantities` and :func:`parse_fractions` never raise for a bad entry: it becomes 0
  and one ``(index, message)`` error, so one malformed pod never stops a batch.

Grammar (Kubernetes)::

    quantity ::= [sign] number [suffix]
    number   ::= digits | digits "." [digits] | "." digits
    suffix   ::= "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei"            (2**10, ..., 2**60)
               | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E" (1e-9, ..., 1e18)
               | ("e" | "E") [sign] digits                           (decimal exponent)
"""
from __future__ import annotations

from .._quantity import QuantityError
from .. import _quantity as _q

__all__ = [
    "QuantityError",
    "parse_bool",
    "parse_fraction",
    "parse_fractions",
    "parse_mib",
    "parse_positive_int",
    "parse_quantities",
    "parse_quantity",
]


def parse_quantity(value, unit: str, field: str = "quantity") -> int:
    """Parse one Kubernetes quantity into an integer amount of ``unit``.

    Parameters
    ----------
    value : str, int or float
        The quantity as written in a manifest (``"500m"``, ``"4Gi"``, ``"1e3"``). YAML numbers are
        accepted: an ``int`` is exact, a ``float`` is read from its ``repr`` (``0.5`` -> ``"0.5"``).
    unit : {"cpu", "memory", "count"}
        ``"cpu"``: milli-cores (``"1.5"`` -> 1500). ``"memory"``: MiB, the quantity being bytes
        (``"4Gi"`` -> 4096, ``"100M"`` -> 96). ``"count"``: a whole number (``"2k"`` -> 2000).
    field : str, optional
        Name used in the error message.

    Returns
    -------
    int
        The amount, rounded up to a whole unit (cpu, memory); exact for counts. Fits in int64.

    Raises
    ------
    QuantityError
        Empty, surrounding whitespace, not a number, unknown suffix, negative, not a whole
        count, or larger than 2**63-1 units.
    ValueError
        ``unit`` is not one of the three units.

    Examples
    --------
    >>> parse_quantity("500m", "cpu"), parse_quantity("4Gi", "memory"), parse_quantity("2", "count")
    (500, 4096, 2)
    >>> parse_quantity("4Gx", "memory")
    Traceback (most recent call last):
    ...
    kaiwo_core._quantity.QuantityError: invalid quantity '4Gx': unknown suffix 'Gx'
    """
    return _q.parse_quantity(value, unit, field)


def parse_quantities(values, unit: str, field: str = "quantity"):
    """Parse a whole column of quantities in one call (the hot path).

    Parameters
    ----------
    values : sequence of str, int, float or None
        One entry per object. ``None`` (field absent) gives 0.
    unit : {"cpu", "memory", "count"}
        As in :func:`parse_quantity`.
    field : str, optional
        Name used in the error messages.

    Returns
    -------
    amounts : numpy.ndarray of int64
        One amount per entry; 0 for ``None`` and for bad entries.
    errors : list of (int, str)
        ``(index, message)`` for every bad entry, in index order. A bad entry never stops the column.

    Raises
    ------
    ValueError
        ``unit`` is not one of the three units (the only error raised).

    Examples
    --------
    >>> amounts, errors = parse_quantities(["1", "500m", None, "x"], "cpu")
    >>> amounts.tolist(), errors
    ([1000, 500, 0, 0], [(3, "invalid quantity 'x': not a number")])
    """
    return _q.parse_quantities(values, unit, field)


def parse_fraction(value, field: str = "kaiwo.ai/gpu-fraction") -> int:
    """Parse a ``kaiwo.ai/gpu-fraction`` value into milli-GPU.

    Parameters
    ----------
    value : str, int or float
        A plain decimal between 0.1 and 1.0 inclusive with at most milli precision
        (``"0.5"``, ``"1"``, ``"0.125"``, ``".25"``). Trailing zeros do not count as precision
        (``"0.1250"`` is 125). No suffix, no exponent.
    field : str, optional
        Name used in the error message.

    Returns
    -------
    int
        Milli-GPU in [100, 1000].

    Raises
    ------
    QuantityError
        Not a number, outside [0.1, 1.0] ("must be between 0.1 and 1.0"), or finer than 0.001
        ("more than milli precision"); the range is checked first.

    Examples
    --------
    >>> parse_fraction("0.5"), parse_fraction("1.0"), parse_fraction("0.125")
    (500, 1000, 125)
    """
    return _q.parse_fraction(value, field)


def parse_fractions(values, field: str = "kaiwo.ai/gpu-fraction"):
    """Column version of :func:`parse_fraction`.

    Parameters
    ----------
    values : sequence of str, int, float or None
        ``None`` (annotation absent) gives 0.
    field : str, optional
        Name used in the error messages.

    Returns
    -------
    milli : numpy.ndarray of int64
        Milli-GPU per entry; 0 for ``None`` and bad entries.
    errors : list of (int, str)
        ``(index, message)`` for every bad entry.
    """
    return _q.parse_fractions(values, field)


def parse_positive_int(value, name: str) -> int:
    """Parse a decimal integer >= 1, e.g. ``kaiwo.ai/gpu-fraction-num-devices`` or
    ``kaiwo.ai/gang-min-members``.

    Parameters
    ----------
    value : str or int
        Decimal digits only (``"2"``, ``"08"``); no sign, no suffix, no whitespace. An ``int`` or an
        integral ``float`` is accepted.
    name : str
        The annotation, used in the error message.

    Returns
    -------
    int
        The value, 1 <= value <= 2**63-1.

    Raises
    ------
    QuantityError
        Empty, not digits, 0, or too large.
    """
    return _q.parse_positive_int(value, name)


def parse_mib(value, field: str = "kaiwo.ai/gpu-memory") -> int:
    """Parse ``kaiwo.ai/gpu-memory`` into MiB.

    Parameters
    ----------
    value : str or int
        Either a number without a unit suffix, which is MiB and must be whole (``"4000"``,
        ``"4e3"``), or a quantity with a decimal-SI or binary suffix, which is bytes (``"4Gi"`` ->
        4096, ``"16G"`` -> 15259, rounded up).
    field : str, optional
        Name used in the error message.

    Returns
    -------
    int
        MiB, > 0.

    Raises
    ------
    QuantityError
        Any :func:`parse_quantity` error, a fractional plain number, or 0.

    Examples
    --------
    >>> parse_mib("4000"), parse_mib("4Gi"), parse_mib("16G")
    (4000, 4096, 15259)
    """
    return _q.parse_mib(value, field)


def parse_bool(value, name: str) -> bool:
    """Parse ``"true"`` or ``"false"`` (any case), e.g. ``kaiwo.ai/gpu-sharing``.

    Parameters
    ----------
    value : str or bool
        The annotation value; a ``bool`` is returned as is.
    name : str
        The annotation, used in the error message.

    Returns
    -------
    bool

    Raises
    ------
    QuantityError
        Anything else (including ``"yes"``, ``"1"`` and surrounding whitespace).
    """
    return _q.parse_bool(value, name)
