"""Reading cluster dumps -- what ``kubectl get -o yaml`` (or ``-o json``) prints -- and scheduler
configuration files (:func:`load_config`).

A dump is a multi-document YAML stream, a ``kind: List`` (``items``), or a mix; JSON works too
(every JSON document is YAML, and a ``.json`` file takes the much faster JSON parser). YAML is read
with libyaml's C loader when PyYAML has it; reading stays a small part of a cycle even at 10,000
pods.

The path ``-`` is standard input. A gzip file is recognised by its magic bytes (whatever its
name); a byte-order mark selects UTF-16 or UTF-32 (what PowerShell's ``>`` writes) and a UTF-8 BOM
is skipped. A file with no document at all (empty, or only comments) is an error, YAML or JSON
alike: a cluster with nothing in it still dumps as ``kind: List`` with ``items: []``.

A dump is untrusted input, so reading it is bounded: nesting deeper than :data:`MAX_DEPTH` levels
and YAML aliases that expand to more than :data:`MAX_ALIAS_NODES` nodes beyond the text's own (an
"alias bomb": a few hundred bytes that expand to billions of nodes) are refused with a
:class:`DumpError` before any object is built from them, as are a gzip stream that expands beyond
:data:`MAX_GUNZIP_BYTES` (a "zip bomb"), binary files and bytes that are not valid text.
"""
from __future__ import annotations

import codecs
import json
import re
import sys
import zlib
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
#: Most bytes a gzipped dump may expand to (a 100,000-pod dump is a few hundred MiB of JSON).
MAX_GUNZIP_BYTES = 4 << 30

#: The name of standard input, as a path argument and in messages.
STDIN = "-"
GZIP_MAGIC = b"\x1f\x8b"
# Longest first: the UTF-32 LE mark begins with the UTF-16 LE one.
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
         (codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))


# A JSON escape of a UTF-16 surrogate: with no partner it decodes to a string that is not Unicode
# (and fails when printed or written as UTF-8). libyaml refuses such escapes itself.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


class DumpError(ValueError):
    """The file is not a readable dump (not YAML/JSON, or documents that are not objects)."""


def flatten(docs, where: str = "") -> list[dict]:
    """Objects from documents that are objects, ``kind: List``s, or lists of objects. An entry
    that is none of these is a :class:`DumpError` naming ``where`` (the file) and its place:
    ``document 2`` (1-based, as editors count), ``document 1, items[3]`` (0-based, as in YAML paths)."""
    out: list[dict] = []
    _flatten(docs, (where + ": ") if where else "", "document {}", 1, out)
    return out


def _flatten(docs, where: str, place: str, base: int, out: list) -> None:
    for i, doc in enumerate(docs):
        at = place.format(i + base)
        if doc is None:
            continue
        if isinstance(doc, list):
            _flatten(doc, where, at + "[{}]", 0, out)
        elif isinstance(doc, dict) and isinstance(doc.get("items"), list) and \
                str(doc.get("kind", "List")).endswith("List"):
            _flatten(doc["items"], where, at + (", items[{}]" if place.startswith("document") else ".items[{}]"),
                     0, out)
        elif isinstance(doc, dict):
            out.append(doc)
        else:
            raise DumpError(f"{where}{at} is a {type(doc).__name__} ({show(doc)}), not a Kubernetes object")


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
            budget -= check_size(node, _yaml_children, budget, f"{path}: document {len(docs) + 1}")
            docs.append(loader.construct_document(node))
    finally:
        loader.dispose()
    return docs


def _gunzip(data: bytes, path) -> bytes:
    """The bytes of a gzip stream (several members too, as ``cat a.gz b.gz`` makes), refused once
    they pass :data:`MAX_GUNZIP_BYTES`: decompressed in bounded steps, never all at once."""
    out, left, rest = [], MAX_GUNZIP_BYTES, data
    try:
        while rest:
            d = zlib.decompressobj(wbits=31)
            chunk = d.decompress(rest, left + 1)
            while True:
                out.append(chunk)
                left -= len(chunk)
                if left < 0:
                    raise DumpError(f"{path}: the gzip stream expands beyond {MAX_GUNZIP_BYTES} bytes: refused")
                if d.eof or not d.unconsumed_tail:
                    break
                chunk = d.decompress(d.unconsumed_tail, left + 1)
            if not d.eof:
                raise DumpError(f"{path}: truncated gzip stream")
            rest = d.unused_data
    except zlib.error as e:
        raise DumpError(f"{path}: not a readable gzip file: {e}") from None
    return b"".join(out)


def _text(path, data: bytes) -> str:
    """The text of a file's bytes: gunzipped if gzip, decoded by its byte-order mark, else UTF-8."""
    if data[:2] == GZIP_MAGIC:
        data = _gunzip(data, path)
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom):].decode(encoding)
            except UnicodeDecodeError as e:
                raise DumpError(f"{path}: not {encoding.upper()} text despite its byte-order mark "
                                f"(byte {e.start + len(bom)}: {e.reason})") from None
    if b"\0" in data[:8192]:  # no text format holds NUL; UTF-16 without a mark does (ASCII half)
        raise DumpError(f"{path}: a binary file (NUL bytes), not a YAML or JSON dump"
                        + (" (UTF-16 without a byte-order mark? convert it to UTF-8)"
                           if data[1:2] == b"\0" or data[:1] == b"\0" else ""))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DumpError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None


def _is_json(path, text: str) -> bool:
    """A ``.json`` (or ``.json.gz``) name, or -- standard input, other names -- text that opens as
    JSON does: the JSON parser is much faster, and every JSON document is YAML anyway."""
    name = str(path)
    if name.endswith((".json", ".json.gz")):
        return True
    return not name.endswith((".yaml", ".yml", ".yaml.gz", ".yml.gz")) and text.lstrip()[:1] in ("{", "[")


def _documents(path, data: bytes) -> list:
    """The parsed documents of a file's bytes, bounded as the module doc says."""
    text = _text(path, data)
    try:
        if _is_json(path, text):
            if not text.strip():
                return []
            try:
                docs = [json.loads(text)]
            except json.JSONDecodeError:
                if str(path).endswith((".json", ".json.gz")):
                    raise
                return _load_yaml(text, path)  # looked like JSON; YAML flow style, say
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


def read_bytes(path: str | Path) -> tuple[str, bytes]:
    """(the name shown in messages, the bytes) of a path; ``-`` is standard input."""
    if str(path) == STDIN:
        return "<stdin>", sys.stdin.buffer.read()
    return str(path), Path(path).read_bytes()


def load_dump(path: str | Path) -> list[dict]:
    """All Kubernetes objects in a dump file (``-``: standard input), in file order.

    Raises
    ------
    OSError
        The file cannot be read.
    DumpError
        It is not a dump: not YAML or JSON text, too large, no document at all, or a document
        that is not an object.
    """
    name, data = read_bytes(path)
    docs = _documents(name, data)
    if not any(d is not None for d in docs):
        raise DumpError(f"{name}: no YAML or JSON document (an empty file?): an empty cluster dumps as "
                        "'kind: List' with 'items: []'")
    return flatten(docs, name)


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
