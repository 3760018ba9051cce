"""The YAML front end: documents, their lines, and located errors for malformed files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from svcnet import load
from svcnet.load import Document, _error_diag, expand_paths, load_paths, load_text, read_text

MULTI = """\
# leading comment
apiVersion: v1
kind: Service
metadata:
  name: a
---
apiVersion: v1
kind: Pod
metadata:
  name: b
spec:
  containers:
    - name: c
      ports:
        - containerPort: 80
...
---
# only a comment
---
apiVersion: v1
kind: Pod
"""


def test_documents_keep_their_start_lines():
    result = load_text("m.yaml", MULTI)
    assert not result.diagnostics
    assert [(d.index, d.line, d.obj["kind"]) for d in result.documents] == [
        (0, 1, "Service"), (1, 6, "Pod"), (2, 19, "Pod")]  # a comment-only document is none


def test_locate_finds_nested_fields_in_later_documents():
    doc = load_text("m.yaml", MULTI).documents[1]
    assert doc.locate(("spec", "containers", 0, "ports", 0, "containerPort")) == (15, 26)
    assert doc.locate(("metadata", "name")) == (10, 9)


def test_locate_falls_back_to_closest_parent():
    doc = load_text("m.yaml", MULTI).documents[0]
    assert doc.locate(("metadata", "namespace")) == (5, 3)


def test_diag_formats_file_line_col_path():
    doc = load_text("m.yaml", MULTI).documents[1]
    d = doc.diag(("spec", "containers", 0, "ports", 0, "containerPort"), "bad")
    assert str(d) == "m.yaml:15:26: spec.containers[0].ports[0].containerPort: bad"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # PyYAML's context and problem, on one line; the unclosed sequence is seen at the end
        ("a: 1\nb: [1, 2\n", "bad.yaml:3:1: (yaml): invalid YAML: while parsing a flow sequence did not find "
                             "expected ',' or ']'"),
        # in a later document: its own line offset, the column of the offending ':'
        ("kind: Service\n---\nkey: value\n  bad: indent\n",
         "bad.yaml:4:6: (yaml): invalid YAML: mapping values are not allowed in this context"),
        ("a: b: c\n", "bad.yaml:1:5: (yaml): invalid YAML: mapping values are not allowed in this context"),
        ("", "bad.yaml:1:1: (file): file holds no YAML document"),
        ("# only comments\n", "bad.yaml:1:1: (file): file holds no YAML document"),
    ],
)
def test_malformed_yaml_is_located(text, expected):
    result = load_text("bad.yaml", text)
    assert [str(d) for d in result.diagnostics] == [expected]


def test_binary_and_non_utf8_files_are_rejected(tmp_path: Path):
    (tmp_path / "bin.yaml").write_bytes(b"\x7fELF\x00\x01\x02")
    (tmp_path / "latin.yaml").write_bytes(b"\n\nname: caf\xe9\n")  # the bad byte on line 3
    result = load_paths([tmp_path / "bin.yaml", tmp_path / "latin.yaml"])
    assert [str(d) for d in result.diagnostics] == [
        f"{tmp_path / 'bin.yaml'}:1:1: (file): binary data (NUL byte): not a YAML file",
        f"{tmp_path / 'latin.yaml'}:3:1: (file): not UTF-8 text: not a YAML file",
    ]


def test_an_unreadable_or_oversized_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    text, diag = read_text(tmp_path)  # a directory given as a file: reading it fails
    assert text is None and str(diag) == f"{tmp_path}:1:1: (file): cannot read: Is a directory"
    (tmp_path / "big.yaml").write_text("kind: Service\n")  # 14 bytes
    monkeypatch.setattr(load, "MAX_FILE_BYTES", 13)
    text, diag = read_text(tmp_path / "big.yaml")
    assert text is None and str(diag) == f"{tmp_path / 'big.yaml'}:1:1: (file): file is larger than 13 bytes"
    monkeypatch.setattr(load, "MAX_FILE_BYTES", 14)
    assert read_text(tmp_path / "big.yaml") == ("kind: Service\n", None)


def test_directories_expand_to_sorted_yaml_files(tmp_path: Path):
    for name in ("b.yaml", "a.yml", "c.txt"):
        (tmp_path / name).write_text("kind: X\n")
    files, diags = expand_paths([tmp_path])
    assert [f.name for f in files] == ["a.yml", "b.yaml"]
    assert not diags


def test_missing_path_is_an_error(tmp_path: Path):
    _, diags = expand_paths([tmp_path / "nope.yaml"])
    assert [str(d) for d in diags] == [f"{tmp_path / 'nope.yaml'}:1:1: (file): no such file or directory"]


def test_a_directory_without_yaml_is_an_error(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("kind: X\n")
    (tmp_path / "sub.yaml").mkdir()  # a directory, even named *.yaml, is no file of it
    files, diags = expand_paths([tmp_path])
    assert files == []
    assert [str(d) for d in diags] == [f"{tmp_path}:1:1: (file): directory holds no *.yaml or *.yml file"]


def test_duplicate_keys_are_an_error():
    # yaml-rs refuses them where PyYAML would not: no position, so the document's first line
    result = load_text("dup.yaml", "a: 1\nb: 2\n---\nkind: Service\nkind: Pod\n")
    assert [str(d) for d in result.diagnostics] == ["dup.yaml:3:1: (yaml): invalid YAML: duplicate mapping key: 'kind'"]


def test_forbidden_characters_are_located_on_one_line():
    # A control character after multi-byte ones: libyaml reports a byte offset, we report line:col.
    result = load_text("ctl.yaml", "kind: Service\nname: éé\x1f\nbad: [\n")  # yaml-rs refuses the [
    (d,) = result.diagnostics
    assert (d.line, d.col, d.path) == (2, 9, "(yaml)")
    assert "0x001f" in d.message and "\n" not in str(d)


@pytest.mark.parametrize("tag", ["!!timestamp", "!!bool", "!!int", "!!float"])
def test_a_tagged_value_pyyaml_cannot_read_is_located_at_the_value(tag: str):
    # Found by fuzzing: PyYAML's constructors raise AttributeError (`!!timestamp x`) or KeyError
    # (`!!bool x`), both a traceback from `svcnet validate`, or a ValueError without a position.
    result = load_text("tag.yaml", f"kind: Service\n---\nkind: Pod\nmetadata:\n  name: {tag} x\n")
    assert [doc.obj["kind"] for doc in result.documents] == ["Service"]
    (d,) = result.diagnostics
    assert (d.line, d.col, d.path) == (5, 9, "(yaml)")
    assert d.message == f"invalid YAML: 'x' is not a valid {tag}"


def test_a_forbidden_character_on_a_later_line_of_a_later_document():
    # line 4 of the file, after two multi-byte characters on its line: column 6, not a byte offset
    result = load_text("ctl.yaml", "kind: X\n---\nx: 1\ny: éé\x1f\nbad: [\n")
    assert [str(d) for d in result.diagnostics] == [
        "ctl.yaml:4:6: (yaml): invalid YAML: character 0x001f is not allowed (control characters are not allowed)"]


def test_an_error_without_a_position_is_at_the_documents_first_line():
    assert str(_error_diag("f.yaml", 4, "x", yaml.MarkedYAMLError(problem="odd"))) == (
        "f.yaml:4:1: (yaml): invalid YAML: odd")
    assert str(_error_diag("f.yaml", 4, "x", yaml.MarkedYAMLError())) == (
        "f.yaml:4:1: (yaml): invalid YAML: invalid YAML")
    assert str(_error_diag("f.yaml", 4, "x", MemoryError())) == "f.yaml:4:1: (yaml): invalid YAML: MemoryError"


NESTED = "kind: X\nspec:\n  items:\n    - a\n    - b\n  name: abc\n"


@pytest.mark.parametrize(("path", "where"), [
    (("spec", "items", 1), (5, 7)),  # the item itself
    (("spec", "items", "name"), (4, 5)),  # a key under a list: the list
    (("spec", "items", 2), (4, 5)),  # one past the last item: the list
    (("spec", "items", -1), (4, 5)),  # no negative indexes: the list
    (("spec", 0), (3, 3)),  # an index under a mapping: the mapping
    (("spec", "name", 0), (6, 9)),  # an index under a scalar: the scalar
])
def test_locate_stops_at_the_closest_node_that_exists(path, where):
    assert load_text("n.yaml", NESTED).documents[0].locate(path) == where


def test_locate_in_text_it_cannot_compose_is_the_documents_first_line():
    assert Document("f.yaml", 0, 7, "a: [", {"a": 1}).locate(("a",)) == (7, 1)  # PyYAML refuses the text
    assert Document("f.yaml", 0, 7, "# nothing\n", {"a": 1}).locate(("a",)) == (7, 1)  # no node at all


AFTER_END = "invalid YAML: content after the document end marker '...' (start another document with '---')"


@pytest.mark.parametrize(("text", "expected", "documents"), [
    # yaml-rs (YAML 1.2) reads `kind: B` as another document, PyYAML refuses it; it was dropped unseen
    ("kind: A\n...\nkind: B\n", [f"e.yaml:3:1: (yaml): {AFTER_END}"], [(0, "A")]),
    ("kind: A\n... junk\n---\nkind: B\n", [f"e.yaml:2:5: (yaml): {AFTER_END}"], [(0, "A"), (2, "B")]),
    ("kind: A\n... # end\n\n  # more\n%YAML 1.2\n---\nkind: B\n...\n", [], [(0, "A"), (1, "B")]),  # no content
])
def test_content_after_a_document_end_marker_is_an_error(text, expected, documents):
    result = load_text("e.yaml", text)
    assert [str(d) for d in result.diagnostics] == expected
    assert [(d.index, d.obj["kind"]) for d in result.documents] == documents


def test_every_document_after_a_bad_or_empty_one_still_loads():
    huge = "1" * 5000  # more digits than Python prints
    text = f"kind: A\n---\nb: [\n---\n~\n---\nport: {huge}\n---\nkind: B\n"
    result = load_text("m.yaml", text)
    assert [(d.line, d.col, d.path) for d in result.diagnostics] == [(4, 1, "(yaml)"), (7, 7, "port")]
    assert [(d.index, d.line, d.obj) for d in result.documents] == [(0, 1, {"kind": "A"}), (3, 8, {"kind": "B"})]


def test_without_yaml_rs_pyyaml_reads_the_same_documents(monkeypatch: pytest.MonkeyPatch):
    fast = [(d.index, d.line, d.obj) for d in load_text("m.yaml", MULTI).documents]
    monkeypatch.setattr(load, "yaml_rs", None)  # yaml-rs is a dependency, PyYAML the documented fallback
    assert [(d.index, d.line, d.obj) for d in load_text("m.yaml", MULTI).documents] == fast
    assert [str(d) for d in load_text("m.yaml", "a: b: c\n").diagnostics] == [
        "m.yaml:1:5: (yaml): invalid YAML: mapping values are not allowed in this context"]


def test_a_byte_order_mark_is_not_part_of_the_text(tmp_path: Path):
    (tmp_path / "bom.yaml").write_bytes("\ufeffkind: Service\n".encode())
    assert read_text(tmp_path / "bom.yaml") == ("kind: Service\n", None)


def test_a_yaml_rs_failure_without_a_message_is_named_by_its_type(monkeypatch: pytest.MonkeyPatch):
    class Silent:  # as a Rust panic with no message would fail; PyYAML reads the same text fine
        @staticmethod
        def loads(text: str) -> object:
            raise RuntimeError()

    monkeypatch.setattr(load, "yaml_rs", Silent)
    assert [str(d) for d in load_text("s.yaml", "kind: Service\n").diagnostics] == [
        "s.yaml:1:1: (yaml): invalid YAML: RuntimeError"]
