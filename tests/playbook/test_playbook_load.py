"""Playbook loading: the model built from a good file, located errors for bad ones."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from svcnet.playbook import PlaybookError, load_playbook

FIX = Path(__file__).parent / "fixtures"


def test_good_playbook_model() -> None:
    plays = load_playbook(FIX / "site.yaml")
    assert [p.name for p in plays] == ["services on every node", ""]
    first, second = plays
    assert first.hosts == "all:!bastion"
    assert first.cluster == ((FIX / "clusters" / "demo.yaml").resolve(),)
    assert first.serial == "50%" and second.serial == 1
    assert first.vars == {"dry_run": False}
    assert [t.action for t in first.tasks] == ["validate", "preflight", "network", "rules", "verify", "teardown"]
    assert first.tasks[1].options == {"timeout": 5} and first.tasks[0].options == {}
    assert first.tasks[2].tags == {"net", "svcnet"}  # a string tag, plus the play's tags
    assert first.tasks[0].line == 10 and first.source.endswith("site.yaml:2")
    assert second.cluster == tuple((FIX / "clusters" / n).resolve() for n in ("demo.yaml", "extra.yaml"))
    assert second.tasks[0].name == "rules"  # an unnamed task is named after its action


def test_cluster_paths_may_be_left_unchecked(tmp_path: Path) -> None:
    book = tmp_path / "p.yaml"
    book.write_text("- hosts: all\n  cluster: later.yaml\n  tasks:\n    - validate:\n")
    with pytest.raises(PlaybookError, match="not found"):
        load_playbook(book)
    (play,) = load_playbook(book, check_paths=False)
    assert play.cluster == (tmp_path / "later.yaml",)


BAD = [
    # (file, line, path, message fragment)
    ("not_list.yaml", 1, "(document)", "non-empty list of plays"),
    ("play_key_typo.yaml", 2, "[0].host", "did you mean 'hosts'"),
    ("play_key_typo.yaml", 1, "[0]", "missing 'hosts'"),
    ("missing_cluster.yaml", 1, "[0]", "missing 'cluster'"),
    ("cluster_not_found.yaml", 5, "[0].cluster[1]", "nope.yaml' not found"),
    ("unknown_verb.yaml", 6, "[0].tasks[0].rulez", "did you mean 'rules'"),
    ("unknown_verb.yaml", 5, "[0].tasks[0]", "task has no action"),
    ("two_verbs.yaml", 7, "[0].tasks[0].verify", "several actions"),
    ("options_scalar.yaml", 6, "[0].tasks[0].rules", "must be a mapping or empty"),
    ("serial_bad.yaml", 4, "[0].serial", "'150%'"),
    ("serial_bad.yaml", 10, "[1].serial", "positive host count"),
    ("tasks_empty.yaml", 4, "[0].tasks", "non-empty list"),
    ("hosts_regex.yaml", 2, "[0].hosts", "unbalanced brackets"),
    ("tags_mapping.yaml", 7, "[0].tasks[0].tags", "tags must be"),
    ("syntax.yaml", 5, "(yaml)", "invalid YAML"),
    ("task_scalar.yaml", 5, "[0].tasks[0]", "a task must be a mapping"),
]


@pytest.mark.parametrize(("name", "line", "path", "fragment"), BAD)
def test_bad_playbooks_give_located_errors(name: str, line: int, path: str, fragment: str) -> None:
    source = FIX / "bad" / name
    with pytest.raises(PlaybookError) as info:
        load_playbook(source)
    hits = [
        m for m in info.value.messages if m.startswith(f"{source}:{line}:") and f": {path}: " in m and fragment in m
    ]
    assert hits, "\n".join(info.value.messages)
    for message in info.value.messages:
        assert re.match(r"^\S+:\d+:\d+: .+: .+", message), message


def test_every_problem_is_reported_once() -> None:
    with pytest.raises(PlaybookError) as info:
        load_playbook(FIX / "bad" / "serial_bad.yaml")
    assert len(info.value.messages) == 2
    with pytest.raises(PlaybookError) as info:
        load_playbook(FIX / "bad" / "play_key_typo.yaml")
    assert len(info.value.messages) == 2


def test_missing_playbook_file(tmp_path: Path) -> None:
    with pytest.raises(PlaybookError, match="no such playbook"):
        load_playbook(tmp_path / "none.yaml")


def test_alias_bomb_in_a_playbook_is_refused_where_the_alias_is(tmp_path: Path) -> None:
    book = tmp_path / "bomb.yaml"
    copies = ", ".join(["*big"] * 5000)
    book.write_text(
        f"- hosts: all\n  cluster: c.yaml\n  vars:\n    big: &big \"{'x' * 100_000}\"\n    copies: [{copies}]\n"
        "  tasks:\n    - validate:\n"
    )
    with pytest.raises(PlaybookError) as info:
        load_playbook(book, check_paths=False)
    (message,) = info.value.messages
    assert re.match(rf"^{re.escape(str(book))}:5:\d+: \[0\]\.vars\.copies\[\d+\]: ", message), message
    assert "alias bomb" in message


def test_a_host_list_file_in_a_plays_hosts_is_refused(tmp_path: Path) -> None:
    # Found by tests/fuzz: `hosts: '@file'` loaded, then the run read the file relative to the
    # working directory and crashed with a traceback when it was missing.
    book = tmp_path / "p.yaml"
    book.write_text("- hosts: web:!@retry.txt\n  cluster: c.yaml\n  tasks:\n    - validate:\n")
    with pytest.raises(PlaybookError) as info:
        load_playbook(book, check_paths=False)
    (message,) = info.value.messages
    assert message.startswith(f"{book}:1:10: [0].hosts: ") and "'!@retry.txt'" in message


@pytest.mark.parametrize("serial", ["²", "0", "9" * 5000, "9" * 5000 + "%"])
def test_serial_strings_int_cannot_read_are_located_errors(tmp_path: Path, serial: str) -> None:
    # Found by tests/fuzz: str.isdigit() accepts '²' and 5,000 digits, which int() refuses (a
    # traceback); "0" was taken as 0 hosts per batch although serial: 0 is refused.
    book = tmp_path / "p.yaml"
    book.write_text(f"- hosts: all\n  cluster: c.yaml\n  serial: '{serial}'\n  tasks:\n    - validate:\n")
    with pytest.raises(PlaybookError) as info:
        load_playbook(book, check_paths=False)
    assert any(m.startswith(f"{book}:3:") and ": [0].serial: " in m for m in info.value.messages), info.value.messages
