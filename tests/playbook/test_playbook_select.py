"""Tag selection (Ansible's evaluate_tags) and serial batches (Ansible's _get_serialized_batches)."""

from __future__ import annotations

from pathlib import Path

import pytest

from svcnet.playbook import load_playbook, select_tasks, serial_batches, should_run
from svcnet.playbook.select import serial_size

FIX = Path(__file__).parent / "fixtures"


ALL_BUT_TEARDOWN = ["validate", "preflight", "network", "rules", "verify"]


@pytest.mark.parametrize(
    ("tags", "skip", "expected"),
    [
        # site.yaml tasks: validate[always] preflight[] network[net] rules[rules,push] verify[verify]
        # teardown[never,teardown]; every task also carries the play tag `svcnet`.
        ((), (), ALL_BUT_TEARDOWN),  # `never` is skipped by default
        (("rules",), (), ["validate", "rules"]),  # `always` still runs
        (("teardown",), (), ["validate", "teardown"]),  # `never` runs when asked for
        (("never",), (), ["validate", "teardown"]),
        (("all",), ("rules",), ["validate", "preflight", "network", "verify"]),
        ((), ("always",), ["preflight", "network", "rules", "verify"]),
        ((), ("all",), ["validate"]),  # only `always` survives --skip-tags all
        (("svcnet",), (), [*ALL_BUT_TEARDOWN, "teardown"]),  # play tags are inherited
        (("tagged",), (), ALL_BUT_TEARDOWN),
        (("all", "teardown"), (), [*ALL_BUT_TEARDOWN, "teardown"]),
    ],
)
def test_select_tasks_like_ansible(tags: tuple[str, ...], skip: tuple[str, ...], expected: list[str]) -> None:
    play = load_playbook(FIX / "site.yaml")[0]
    assert [t.action for t in select_tasks(play, tags, skip)] == expected


def test_should_run_untagged() -> None:
    assert should_run([], ["untagged"])
    assert not should_run(["x"], ["untagged"])
    assert not should_run([], ["tagged"])
    assert should_run([], ["all"], ["tagged"])
    assert not should_run(["x"], ["all"], ["tagged"])
    assert not should_run(["always"], ["all"], ["all", "always"])


HOSTS = [f"n{i}" for i in range(1, 11)]


@pytest.mark.parametrize(
    ("serial", "sizes"),
    [
        (None, [10]),
        (0, [10]),
        (1, [1] * 10),
        (3, [3, 3, 3, 1]),
        (20, [10]),
        ("30%", [3, 3, 3, 1]),
        ("25%", [2, 2, 2, 2, 2]),  # int(2.5) == 2
        ("5%", [1] * 10),  # rounds down to 0, then at least 1
        ("100%", [10]),
        ((1, 3), [1, 3, 3, 3]),  # a list: the last size repeats
        ((1, "50%"), [1, 5, 4]),  # percentages are of all hosts, not of those left
    ],
)
def test_serial_batches(serial: object, sizes: list[int]) -> None:
    batches = serial_batches(HOSTS, serial)  # type: ignore[arg-type]
    assert [len(b) for b in batches] == sizes
    assert [h for b in batches for h in b] == HOSTS  # order kept, nobody lost or repeated


def test_serial_edge_cases() -> None:
    assert serial_batches([], 2) == []
    assert serial_size("50%", 3) == 1
    assert serial_batches(["a", "b", "c"], "50%") == [["a"], ["b"], ["c"]]
