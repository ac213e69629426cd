"""Durations as Kubernetes and Go spell them (``1h30m``, ``90s``, ``500ms``) -> seconds."""
from __future__ import annotations

import math
import re

#: Longest duration accepted: 100 years. Durations are added to epoch times and compared.
MAX_SECONDS = 100 * 365.25 * 86400

_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text) -> float:
    """Seconds in ``text``: a Go-style duration or a non-negative number of seconds.

    Raises
    ------
    ValueError
        With the reason, for anything else (the caller names the object and field).
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        try:
            seconds = float(text)
        except OverflowError:  # an integer too large for a float
            seconds = math.inf
        if not math.isfinite(seconds) or seconds > MAX_SECONDS:  # NaN would compare false everywhere
            raise ValueError(f"must be a finite number of seconds, at most {MAX_SECONDS:g}")
        if seconds < 0:
            raise ValueError("must not be negative")
        return seconds
    if not isinstance(text, str):
        raise ValueError(f"must be a duration string or a number of seconds, not a {type(text).__name__}")
    s = text.strip()
    pos, total = 0, 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError("not a duration (expected e.g. 10m, 1h30m, 90s)")
    if total > MAX_SECONDS:  # also catches digits that overflow to inf
        raise ValueError(f"longer than {MAX_SECONDS:g} s")
    return total
