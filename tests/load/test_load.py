"""The YAML front end: documents, their lines, and located errors for malformed files."""

from __future__ import annotations

from pathlib import Path

import pytest

from svcnet.load import expand_paths, load_paths, load_text

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
    assert [(d.line, d.obj["kind"]) for d in result.documents] == [(1, "Service"), (6, "Pod"), (19, "Pod")]


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
    ("text", "line", "fragment"),
    [
        ("a: 1\nb: [1, 2\n", 3, "invalid YAML"),
        ("kind: Service\n---\nkey: value\n  bad: indent\n", 4, "invalid YAML"),
        ("a: b: c\n", 1, "invalid YAML"),
        ("", 1, "holds no YAML document"),
        ("# only comments\n", 1, "holds no YAML document"),
    ],
)
def test_malformed_yaml_is_located(text, line, fragment):
    result = load_text("bad.yaml", text)
    assert result.diagnostics, text
    d = result.diagnostics[0]
    assert (d.file, d.line) == ("bad.yaml", line)
    assert fragment in d.message


def test_binary_and_non_utf8_files_are_rejected(tmp_path: Path):
    (tmp_path / "bin.yaml").write_bytes(b"\x7fELF\x00\x01\x02")
    (tmp_path / "latin.yaml").write_bytes(b"name: caf\xe9\n")
    result = load_paths([tmp_path / "bin.yaml", tmp_path / "latin.yaml"])
    messages = [str(d) for d in result.diagnostics]
    assert any("bin.yaml:1:1" in m and "binary" in m for m in messages)
    assert any("latin.yaml:1:1" in m and "UTF-8" in m for m in messages)


def test_directories_expand_to_sorted_yaml_files(tmp_path: Path):
    for name in ("b.yaml", "a.yml", "c.txt"):
        (tmp_path / name).write_text("kind: X\n")
    files, diags = expand_paths([tmp_path])
    assert [f.name for f in files] == ["a.yml", "b.yaml"]
    assert not diags


def test_missing_path_is_an_error(tmp_path: Path):
    _, diags = expand_paths([tmp_path / "nope.yaml"])
    assert "no such file" in diags[0].message


def test_duplicate_keys_are_an_error():
    result = load_text("dup.yaml", "a: 1\nb: 2\n---\nkind: Service\nkind: Pod\n")
    assert [d.line for d in result.diagnostics] == [3]
    assert "duplicate" in result.diagnostics[0].message


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
