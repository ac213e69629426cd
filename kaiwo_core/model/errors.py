"""Typed errors for objects Kaiwo could not read, and the guard every object is decoded in.

Every error names the object, the field and the value, and says why, so a user can fix the manifest
without reading Kaiwo's code. Errors are collected per object: one bad object never stops a batch.

One principle holds for every kind (Pod, Node, PriorityClass, KaiwoQueue, KaiwoJob,
KaiwoReservation), in ``kaiwo schedule`` and in the controller alike: an object is decoded inside
:func:`guarded`, so whatever is wrong with it becomes *that object's* :class:`ObjectError` (a pod is
rejected, any other object is left out) and the cycle goes on. Decoders read fields through
:func:`field_map`, :func:`field_list`, :func:`field_str`, :func:`field_int` and
:func:`field_number`, which refuse a value of the wrong type or out of range with the field's path;
the guard's catch-all is the safety net for a failure no check foresaw, and says so (the hostile
corpus, ``tests/test_hostile_corpus.py``, fails if any case reaches it).
"""
from __future__ import annotations

import math
import reprlib

# Values are shown short and safely: a hostile object may hold a huge, deep or self-referencing
# value, and an error message must never be the thing that fails (or that floods a log).
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 80, 80
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6


def show(value) -> str:
    """``repr(value)``, shortened (depth, length) and never failing."""
    if isinstance(value, int) and value.bit_length() > 256:  # str() of a huge int is slow or refused
        return f"<{'negative ' if value < 0 else ''}integer of {int(value.bit_length() * 0.30103) + 1} digits>"
    try:
        return _REPR.repr(value)
    except Exception:  # noqa: BLE001 - never let showing a value be what fails
        return f"<{type(value).__name__}>"


class ObjectError(ValueError):
    """A Kubernetes object (or array row) with a field Kaiwo cannot accept. ``others`` holds the
    object's further independent errors (:func:`combined`): every report shows them all, on one
    line, after the first."""

    kind = "Object"
    others: tuple = ()

    def __init__(self, name: str, field: str, value, reason: str):
        self.name = name
        self.field = field
        self.value = value
        self.reason = reason
        shown = "" if value is None else f" = {show(value)}"
        super().__init__(f"{self.kind} {name}: {field}{shown}: {reason}")

    def to_dict(self) -> dict:
        """The shape ``kaiwo schedule --output json`` reports (``rejected`` entries): the first
        error's field; the error text goes on with the others' ``field = value: reason``."""
        return {"pod" if self.kind == "Pod" else self.kind.lower(): self.name,
                "field": self.field,
                "error": (self.reason if self.value is None else f"{show(self.value)}: {self.reason}")
                + self._more()}

    def message(self) -> str:
        """``field = value: reason`` -- the error without the object (warnings and reasons that
        name the object already), then the object's other errors."""
        shown = "" if self.value is None else f" = {show(self.value)}"
        return f"{self.field}{shown}: {self.reason}{self._more()}"

    def _more(self) -> str:
        return "".join(f"; {e.message()}" for e in self.others)


class Collector:
    """Reads the independent fields of one object and keeps going past a bad one:
    ``collect(default, fn, *args)`` is ``fn(*args)``, or ``default`` with the ObjectError kept;
    :meth:`raise_all` then raises them together (:func:`combined`). The work stays bounded: one
    error per field read, and a decoder reads a fixed set of fields."""

    def __init__(self):
        self.errors: list = []

    def __call__(self, default, fn, *args):
        try:
            return fn(*args)
        except ObjectError as e:
            self.errors.append(e)
            return default

    def raise_all(self) -> None:
        if self.errors:
            raise combined(self.errors)


def combined(errors: list) -> ObjectError:
    """One error reporting all of ``errors`` (one object's, in the order found): the first, with
    the rest as its ``others``."""
    first = errors[0]
    if len(errors) > 1:
        first.others = tuple(errors[1:])
        first.args = (f"{first.args[0]}{first._more()}",)
    return first


# ------------------------------------------------------------------------------ the guard

def object_name(obj, namespaced: bool = False) -> str:
    """The name an error reports an object under: ``name`` (``namespace/name`` for namespaced
    kinds), read without trusting the object's shape."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    meta = meta if isinstance(meta, dict) else {}
    name = meta.get("name")
    name = name if isinstance(name, str) and name else "<unnamed>" if not name else show(name)
    if not namespaced:
        return name
    ns = meta.get("namespace")
    ns = ns if isinstance(ns, str) and ns else "default" if not ns else show(ns)
    return f"{ns}/{name}"


def guarded(error: type[ObjectError], obj, decode, *args, namespaced: bool = False):
    """``decode(obj, *args)``, or the object's error: an :class:`ObjectError` it raises is
    returned as is, any other failure becomes an ``error`` naming the object (field unknown).

    Returning the error instead of raising keeps every caller on one shape: a decoded value or
    an :class:`ObjectError` to report, and the next object is decoded all the same.
    """
    try:
        return decode(obj, *args)
    except ObjectError as e:
        return e
    except Exception as e:  # noqa: BLE001 - the safety net: one object must never stop a cycle
        return error(object_name(obj, namespaced), "(object)", None,
                     f"cannot be read ({type(e).__name__}: {show(str(e))[1:-1]})")


# ------------------------------------------------------------------------- typed field reads

def field_map(error: type[ObjectError], name: str, value, path: str) -> dict:
    """``value`` if it is a map; ``{}`` if it is absent (None); else ``error`` naming ``path``."""
    if isinstance(value, dict):
        return value
    if value is None:
        return {}
    raise error(name, path, value, f"must be a map, not a {type(value).__name__}")


def require_name(error: type[ObjectError], name: str, meta: dict, kind: str) -> None:
    """``metadata.name`` must be a non-empty string; else ``error`` naming the field."""
    if not isinstance(meta.get("name"), str) or not meta["name"]:
        raise error(name, "metadata.name", meta.get("name"), f"a {kind} needs a name (a string)")


def metadata(error: type[ObjectError], name: str, obj: dict, kind: str) -> dict:
    """``obj``'s ``metadata``: a map with a name (see :func:`require_name`); else ``error``."""
    meta = field_map(error, name, obj.get("metadata"), "metadata")
    require_name(error, name, meta, kind)
    return meta


def field_list(error: type[ObjectError], name: str, value, path: str) -> list:
    """``value`` if it is a list; ``[]`` if absent; else ``error`` naming ``path``."""
    if isinstance(value, list):
        return value
    if value is None:
        return []
    raise error(name, path, value, f"must be a list, not a {type(value).__name__}")


def field_str(error: type[ObjectError], name: str, value, path: str, default: str = "") -> str:
    """``value`` if it is a string; ``default`` if absent; else ``error`` naming ``path``."""
    if isinstance(value, str):
        return value
    if value is None:
        return default
    raise error(name, path, value, f"must be a string, not a {type(value).__name__}")


def field_int(error: type[ObjectError], name: str, value, path: str, lo: int, hi: int) -> int:
    """``value`` if it is an integer within [lo, hi] (an integral float such as ``2.0`` is
    accepted: JSON has one number type); else ``error`` naming ``path``. Checked before the value
    reaches numpy or a kernel, where it would overflow."""
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(name, path, value, "must be an integer")
    if not lo <= value <= hi:
        raise error(name, path, value, f"must be between {lo} and {hi}")
    return value


def field_number(error: type[ObjectError], name: str, value, path: str, lo: float, hi: float) -> float:
    """``value`` as a finite float within (lo, hi]; else ``error`` naming ``path``. NaN and
    infinities are refused here, as the compiled kernels refuse them."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise error(name, path, value, "must be a number")
    try:
        v = float(value)
    except OverflowError:
        v = math.inf
    if not math.isfinite(v) or not lo < v <= hi:
        raise error(name, path, value, f"must be a finite number > {lo:g} and at most {hi:g}")
    return v
