"""The controller's configuration file, watched: a new valid version is applied at the next cycle, a
bad one is rejected with its errors and the previous configuration kept.

A ConfigMap mounted as a volume changes by a symlink swap (the kubelet writes a new ``..data``
directory and renames a symlink onto it), so the file is polled: a ``stat`` that follows the links
each loop turn, and a read only when what it says (inode, size, modification time) changed. What
counts is the bytes: a swap that brings back the same text is no change, and a rejected version is
reported once, not every turn.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from kaiwo_core.scheduling.config import ConfigError, SchedulerConfiguration, decode

from ..dump import DumpError, read_config


@dataclass
class Reload:
    """What one poll found: a new configuration, or why the new version was rejected."""

    config: SchedulerConfiguration | None = None
    errors: list | None = None


class ConfigWatcher:
    """Polls one configuration file (``overrides``: the flags given explicitly, as dotted file
    keys, applied to every version)."""

    def __init__(self, path: str, overrides: dict | None = None):
        self.path = path
        self.overrides = dict(overrides or {})
        self._stat: tuple | None = None
        self._seen: bytes | None = None   # the last version read, applied or rejected
        self._seen_error = ""

    def _signature(self) -> tuple:
        st = os.stat(self.path)
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def load(self) -> SchedulerConfiguration:
        """The current version (at start). Raises OSError, DumpError or ConfigError."""
        self._stat = self._signature()
        doc, data = read_config(self.path)
        self._seen = data
        return decode(doc, self.overrides)

    def poll(self) -> Reload | None:
        """None when nothing changed (or a change already reported); else the new configuration
        or the errors that rejected it."""
        try:
            sig = self._signature()
            if sig == self._stat:
                return None
            doc, data = read_config(self.path)
        except (OSError, DumpError) as e:
            self._stat = None  # read again next turn: the file may come back
            if str(e) == self._seen_error:
                return None
            self._seen_error = str(e)
            return Reload(errors=[f"cannot read: {e}"])
        self._stat, self._seen_error = sig, ""
        if data == self._seen:
            return None
        self._seen = data
        try:
            return Reload(config=decode(doc, self.overrides))
        except ConfigError as e:
            return Reload(errors=e.errors)
