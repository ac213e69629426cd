"""Typed errors for objects Kaiwo could not read.

Every error names the object, the field and the value, and says why, so a user can fix the manifest
without reading Kaiwo's code. Errors are collected per object: one bad object never stops a batch.
"""
from __future__ import annotations


class ObjectError(ValueError):
    """A Kubernetes object (or array row) with a field Kaiwo cannot accept."""

    kind = "Object"

    def __init__(self, name: str, field: str, value, reason: str):
        self.name = name
        self.field = field
        self.value = value
        self.reason = reason
        shown = "" if value is None else f" = {value!r}"
        super().__init__(f"{self.kind} {name}: {field}{shown}: {reason}")

    def to_dict(self) -> dict:
        """The shape ``kaiwo schedule --output json`` reports (``rejected`` entries)."""
        return {"pod" if self.kind == "Pod" else self.kind.lower(): self.name,
                "field": self.field,
                "error": self.reason if self.value is None else f"{self.value!r}: {self.reason}"}
