"""Reading cluster dumps -- what ``kubectl get -o yaml`` (or ``-o json``) prints -- and scheduler
configuration files (:func:`load_config`).

A dump is a multi-document YAML stream, a ``kind: List`` (``items``), or a mix; JSON works too
(every JSON document is YAML, and a ``.json`` file takes the much faster JSON parser). YAML is read
with libyaml's C loader when PyYAML has it; reading stays a small part of a cycle even at 10,000
pods.

A dump is untrusted input, so reading it is bounded: nesting deeper than :data:`MAX_DEPTH` levels
and YAML aliases that expand to more than :data:`MAX_ALIAS_NODES` nodes beyond the text's own (an
"alias bomb": a few hundred bytes that expand to billions of nodes) are refused with a
:class:`DumpError` before any object is built from them, as are bytes that are not UTF-8.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, SequenceNode

from kaiwo_core.model.errors import show

try:  # libyaml: an order of magnitude faster than the pure-Python loader
    _Loader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Loader = yaml.SafeLoader

#: Deepest nesting accepted (Kubernetes objects are rarely 20 levels deep).
MAX_DEPTH = 100
#: Nodes YAML aliases may add beyond those written out in the text.
MAX_ALIAS_NODES = 1_000_000
#: Largest configuration file read (a full one is about 2 KiB).
MAX_CONFIG_BYTES = 1 << 20


# A JSON escape of a UTF-16 surrogate: with no partner it decodes to a string that is not Unicode
# (and fails when printed or written as UTF-8). libyaml refuses such escapes itself.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


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


def _yaml_children(node) -> list:
    if isinstance(node, MappingNode):
        return [x for pair in node.value for x in pair]
    return node.value if isinstance(node, SequenceNode) else []


def _data_children(value) -> list:
    if isinstance(value, dict):
        return [v for v in value.values() if isinstance(v, (dict, list))]
    return [v for v in value if isinstance(v, (dict, list))] if isinstance(value, list) else []


def check_size(root, children, budget: int, where: str, aliases: bool = True) -> int:
    """Walk ``root`` level by level, as far as it expands (an alias is walked each time it is
    used, as every consumer of the data would), and refuse it with a :class:`DumpError` once it
    is nested deeper than :data:`MAX_DEPTH` or has more than ``budget`` nodes. Returns the node
    count. The walk stops at the limit, so it costs at most ``budget`` steps whatever the input;
    a recursive alias expands without end and is refused by the depth limit."""
    level, depth, count = [root], 0, 0
    while level:
        depth += 1
        count += len(level)
        if depth > MAX_DEPTH:
            raise DumpError(f"{where}: nested deeper than {MAX_DEPTH} levels"
                            + (" (or a recursive alias)" if aliases else ""))
        if count > budget:
            raise DumpError(f"{where}: expands to more than {budget} nodes (YAML aliases "
                            f"may add at most {MAX_ALIAS_NODES} to the text's own): refused")
        level = [c for n in level for c in children(n)]
    return count


def _check_unicode(value, path: Path) -> None:
    """Refuse strings (keys and values) holding lone surrogates, as text that is not UTF-8 is."""
    stack = [value]
    while stack:
        v = stack.pop()
        items = list(v.keys()) + list(v.values()) if isinstance(v, dict) else v if isinstance(v, list) else [v]
        for x in items:
            if isinstance(x, (dict, list)):
                stack.append(x)
            elif isinstance(x, str):
                try:
                    x.encode("utf-8")
                except UnicodeEncodeError:
                    raise DumpError(f"{path}: the string {show(x)} holds a lone UTF-16 surrogate "
                                    "(\\ud800-\\udfff escape without its pair): not Unicode text") from None


def _load_yaml(text: str, path: Path) -> list:
    """Documents of a YAML stream, each checked (as composed nodes, before any object is built)
    by :func:`check_size`."""
    # Without aliases a stream has fewer nodes than characters: the budget only binds aliases.
    budget = len(text) + MAX_ALIAS_NODES
    loader = _Loader(text)
    docs = []
    try:
        while loader.check_node():
            node = loader.get_node()
            budget -= check_size(node, _yaml_children, budget, f"{path}: document {len(docs)}")
            docs.append(loader.construct_document(node))
    finally:
        loader.dispose()
    return docs


def _documents(path: Path, data: bytes) -> list:
    """The parsed documents of a file's bytes, bounded as the module doc says."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DumpError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    try:
        if path.suffix == ".json":
            docs = [json.loads(text)]
            # JSON has no aliases: only the depth can be too much (checked on containers only).
            check_size(docs[0], _data_children, len(text) + 1, str(path), aliases=False)
            if _SURROGATE_ESCAPE.search(text):  # rare (Go's encoder never writes them): walk then
                _check_unicode(docs[0], path)
        else:
            docs = _load_yaml(text, path)
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        raise DumpError(f"{path}: cannot parse: {e}") from None
    except RecursionError:  # the JSON parser's own nesting limit
        raise DumpError(f"{path}: nested deeper than {MAX_DEPTH} levels") from None
    return docs


def load_dump(path: str | Path) -> list[dict]:
    """All Kubernetes objects in a dump file, in file order."""
    path = Path(path)
    return flatten(_documents(path, path.read_bytes()))


def read_config(path: str | Path) -> tuple[object, bytes]:
    """The one document of a configuration file, and the file's bytes (what a reload compares).
    At most :data:`MAX_CONFIG_BYTES` are read."""
    path = Path(path)
    with open(path, "rb") as f:
        data = f.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise DumpError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes: not a configuration file")
    docs = [d for d in _documents(path, data) if d is not None]
    if len(docs) > 1:
        raise DumpError(f"{path}: {len(docs)} YAML documents: a configuration file holds one")
    return (docs[0] if docs else None), data


def load_config(path: str | Path | None, overrides: dict | None = None):
    """The :class:`~kaiwo_core.scheduling.config.SchedulerConfiguration` of a file (None: the
    defaults), with ``overrides`` (command-line flags, as dotted file keys) applied.

    Raises
    ------
    OSError, DumpError
        The file cannot be read or parsed.
    kaiwo_core.scheduling.config.ConfigError
        It is not a valid configuration (every error listed).
    """
    from kaiwo_core.scheduling.config import API_VERSION, KIND, decode

    doc = read_config(path)[0] if path is not None else {"apiVersion": API_VERSION, "kind": KIND}
    return decode(doc, overrides)
