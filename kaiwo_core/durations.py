"""Durations as Kubernetes and Go spell them (``1h30m``, ``90s``, ``500ms``) -> seconds."""
from __future__ import annotations

import re

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
        if text < 0:
            raise ValueError("must not be negative")
        return float(text)
    s = str(text).strip()
    pos, total = 0, 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError("not a duration (expected e.g. 10m, 1h30m, 90s)")
    return total
