"""Reading dumps as users hand them over: standard input, gzip, UTF-16 from PowerShell, BOMs,
binary and empty files, and errors that name the file and the document (issue 17)."""
import codecs
import gzip
import io
import json

import pytest

from kaiwo.cli import example_path, main
from kaiwo.dump import DumpError, _gunzip, load_dump

EXAMPLE = open(example_path(), "rb").read()
N_OBJECTS = len(load_dump(example_path()))


class _Stdin:
    def __init__(self, data: bytes):
        self.buffer = io.BytesIO(data)


@pytest.mark.parametrize("name,data", [
    ("ps.yaml", codecs.BOM_UTF16_LE + EXAMPLE.decode().encode("utf-16-le")),  # PowerShell 5 '>'
    ("be.yaml", codecs.BOM_UTF16_BE + EXAMPLE.decode().encode("utf-16-be")),
    ("bom.yaml", codecs.BOM_UTF8 + EXAMPLE),
    ("dump.txt", gzip.compress(EXAMPLE)),  # gzip by its magic bytes, whatever the name
    ("dump.yaml.gz", gzip.compress(EXAMPLE)),
])
def test_encodings_and_gzip_read_as_the_plain_file(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    assert load_dump(p) == load_dump(example_path())


def test_json_with_a_utf8_bom_and_gzipped_json(tmp_path):
    doc = json.dumps({"kind": "List", "items": [{"kind": "Node", "metadata": {"name": "n"}}]}).encode()
    (tmp_path / "a.json").write_bytes(codecs.BOM_UTF8 + doc)
    (tmp_path / "b.gz").write_bytes(gzip.compress(doc))
    assert load_dump(tmp_path / "a.json") == load_dump(tmp_path / "b.gz") == [json.loads(doc)["items"][0]]


def test_binary_file_is_a_clear_error(tmp_path, capsys):
    p = tmp_path / "x.yaml"
    p.write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00" + bytes(range(256)))
    assert main(["schedule", str(p)]) == 2
    assert "x.yaml: a binary file" in capsys.readouterr().err


def test_utf16_without_a_mark_is_named(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_bytes("kind: List\nitems: []\n".encode("utf-16-le"))
    with pytest.raises(DumpError, match="UTF-16 without a byte-order mark"):
        load_dump(p)


@pytest.mark.parametrize("name,text", [("e.yaml", ""), ("e.json", ""), ("c.yaml", "# nothing\n---\n"),
                                       ("w.json", " \n")])
def test_empty_dump_is_an_error_whatever_the_format(tmp_path, capsys, name, text):
    (tmp_path / name).write_text(text)
    assert main(["schedule", str(tmp_path / name)]) == 2
    assert f"{name}: no YAML or JSON document" in capsys.readouterr().err


def test_an_empty_list_is_an_empty_cluster(tmp_path):
    (tmp_path / "l.json").write_text('{"kind": "List", "items": []}')
    assert load_dump(tmp_path / "l.json") == []


@pytest.mark.parametrize("text,where", [
    ("kind: List\nitems: []\n---\nhello\n", "d.yaml: document 2 is a str ('hello')"),
    ("- {kind: Node}\n- 7\n", "d.yaml: document 1[1] is a int (7)"),
    ("kind: List\nitems:\n- {kind: Pod}\n- [x]\n", "document 1, items[1][0] is a str ('x')"),
])
def test_a_document_that_is_no_object_is_named_with_file_and_place(tmp_path, text, where):
    (tmp_path / "d.yaml").write_text(text)
    with pytest.raises(DumpError, match=where.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        load_dump(tmp_path / "d.yaml")


def test_gzip_bomb_is_refused_in_bounded_steps(monkeypatch):
    import kaiwo.dump as dump
    monkeypatch.setattr(dump, "MAX_GUNZIP_BYTES", 1 << 20)
    bomb = gzip.compress(b"\0" * (4 << 20))
    with pytest.raises(DumpError, match="expands beyond"):
        _gunzip(bomb, "b.gz")
    assert _gunzip(gzip.compress(b"a") + gzip.compress(b"b"), "two.gz") == b"ab"  # cat a.gz b.gz
    with pytest.raises(DumpError, match="truncated gzip"):
        _gunzip(gzip.compress(b"abc" * 1000)[:-12], "t.gz")


@pytest.mark.parametrize("argv", [["schedule", "-", "-o", "json"], ["explain", "-", "research/sweep-0"],
                                  ["rebalance", "-", "-o", "json"],
                                  ["recommend", "--dump", "-", "--json"]])
def test_dash_is_standard_input_for_every_command_that_reads_a_dump(monkeypatch, capsys, argv):
    monkeypatch.setattr("sys.stdin", _Stdin(gzip.compress(EXAMPLE)))
    assert main(argv) == 0
    assert capsys.readouterr().out


def test_monitor_dump_from_standard_input(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", _Stdin(EXAMPLE))
    assert main(["monitor", "--dump", "-", "--json"]) in (0, 1)
    out = capsys.readouterr()
    assert out.out and "<stdin>" not in out.err


def test_monitor_names_the_dump_once(tmp_path, capsys):
    (tmp_path / "e.yaml").write_text("")
    assert main(["monitor", "--dump", str(tmp_path / "e.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("e.yaml") == 1 and "no YAML or JSON document" in err
