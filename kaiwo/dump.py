"""Reading cluster dumps: what ``kubectl get -o yaml`` (or ``-o json``) prints.

A dump is a multi-document YAML stream, a ``kind: List`` (``items``), or a mix; JSON works too
(every JSON document is YAML, and a ``.json`` file takes the much faster JSON parser). YAML is read
with libyaml's C loader when PyYAML has it; reading stays a small part of a cycle even at 10,000
pods.
"""
from __future__ import annotations

import json
from pathlib import Path

import yaml

try:  # libyaml: an order of magnitude faster than the pure-Python loader
    _Loader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Loader = yaml.SafeLoader


class DumpError(ValueError):
    """The file is not a readable dump (not YAML/JSON, or documents that are not objects)."""


def flatten(docs) -> list[dict]:
    """Objects from documents that are objects, ``kind: List``s, or lists of objects."""
    out: list[dict] = []
    for i, doc in enumerate(docs):
        if doc is None:
            continue
        if isinstance(doc, list):
            out.extend(flatten(doc))
        elif isinstance(doc, dict) and isinstance(doc.get("items"), list) and \
                str(doc.get("kind", "List")).endswith("List"):
            out.extend(flatten(doc["items"]))
        elif isinstance(doc, dict):
            out.append(doc)
        else:
            raise DumpError(f"document {i} is a {type(doc).__name__}, not a Kubernetes object")
    return out


def load_dump(path: str | Path) -> list[dict]:
    """All Kubernetes objects in a dump file, in file order."""
    path = Path(path)
    text = path.read_text()
    try:
        if path.suffix == ".json":
            docs = [json.loads(text)]
        else:
            docs = list(yaml.load_all(text, Loader=_Loader))
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        raise DumpError(f"{path}: cannot parse: {e}") from None
    return flatten(docs)
