"""Fuzzing playbooks: plays or located errors, never a crash; what loads also runs its selections.

For every loaded play, what `svcnet playbook` does before touching a host must work too:
choose the tasks for `--tags`/`--skip-tags`, select the hosts of its pattern from an
inventory, and split them into `serial` batches.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from fuzzgen import (
    MEMORY_GROWTH_KIB,
    assert_located,
    dump,
    encode,
    fuzz_settings,
    mutate_object,
    mutate_text,
    peak_rss_kib,
)
from hypothesis import given
from hypothesis import strategies as st

from svcnet.playbook import PlaybookError, load_playbook
from svcnet.playbook.model import VERBS
from svcnet.playbook.select import select_tasks, serial_batches
from svcnet.transport.inventory import load_inventory

pytestmark = pytest.mark.slow  # tens of seconds; SVCNET_FUZZ_EXAMPLES scales them

REPO = Path(__file__).resolve().parents[2]
SEED_FILES = sorted([*REPO.glob("playbooks/*.yaml"), *REPO.glob("tests/playbook/fixtures/**/*.yaml")])
SEED_TEXTS = [p.read_text() for p in SEED_FILES]
INVENTORY = "[web]\nnode1\nnode2\n[db]\nnode3\n[k8s:children]\nweb\ndb\n"

# Each field: values a play may hold, then values it may not (drawn one time in five).
PATTERNS = (["all", "node1", "web:!node3", "web:&db", "~node[12]", "web[0]", "web[-1]", "web[0:2]", "web[5:1]", "*",
             "a,b", "node1:node2", "!all", "&web", "node[1:2]", "k8s:!~x", "web[x]", "10.0.0.1", "fe80::1", "nosuch"],
            ["~(", "@hosts.txt", "@nonexistent", "", "[", 5, ["web", ""]])
CLUSTERS: tuple[list[Any], list[Any]] = (["c.yaml", "sub/c.yaml", "./c.yaml", ["c.yaml", "c.yaml"]],
                                         ["/nonexistent/c.yaml", "", [], 5, "nope.yaml"])
SERIALS: tuple[list[Any], list[Any]] = ([1, "50%", "3", " 2 ", [1, "50%"], "100%", "1%", 10**20, [2, 1, "100%"]],
                                        ["0%", "101%", 0, -1, "²", [], "abc", 1.5, True, [2, 0], "9" * 30])
TAGS: tuple[list[Any], list[Any]] = (["a", "a,b", ["x", "y"], "always", "never", ["tagged"], ["all"]],
                                     [[None], {}, [True], 7, [1.5], ["x", 1], "", []])
OPTIONS: tuple[list[Any], list[Any]] = ([None, {}, {"dry_run": True}, {"timeout": 5}, {"x": {"y": []}}],
                                        ["scalar", [1], 5])
TASK_NAMES: tuple[list[Any], list[Any]] = (["push", "validate", " rules "], ["", " ", 5, None])


def pick(draw: Any, pools: tuple[list[Any], list[Any]], bad: bool) -> Any:
    """A good value, or with `bad` one of either kind (plays that load get their selections run)."""
    good, wrong = pools
    return draw(st.sampled_from(good + wrong if bad else good))


@st.composite
def task(draw: Any, bad: bool) -> dict[str, Any]:
    verb = draw(st.sampled_from([*VERBS, "rulez"] if bad else VERBS))
    t: dict[str, Any] = {verb: pick(draw, OPTIONS, bad)}
    if draw(st.booleans()):
        t["name"] = pick(draw, TASK_NAMES, bad)
    if draw(st.booleans()):
        t["tags"] = pick(draw, TAGS, bad)
    return t


@st.composite
def play(draw: Any, bad: bool) -> dict[str, Any]:
    p: dict[str, Any] = {
        "hosts": pick(draw, PATTERNS, bad),
        "cluster": pick(draw, CLUSTERS, bad),
        "tasks": draw(st.lists(task(bad), min_size=1, max_size=3)),
    }
    for key, pools in (("name", (["site", ""], [5])), ("serial", SERIALS), ("tags", TAGS),
                       ("vars", ([{"a": 1}, {"dry_run": False}], [[1], {1: 2}]))):
        if draw(st.booleans()):
            p[key] = pick(draw, pools, bad)
    return p


@st.composite
def playbook_text(draw: Any) -> bytes:
    how = draw(st.sampled_from(["good", "good", "bad", "objects", "text", "seed-text"]))
    if how == "seed-text":
        return encode(draw, mutate_text(draw, draw(st.sampled_from(SEED_TEXTS))))
    plays = draw(st.lists(play(how == "bad"), min_size=1, max_size=2))
    if how == "objects":
        plays = mutate_object(draw, plays)
    text = dump([plays], draw)
    return encode(draw, mutate_text(draw, text)) if how == "text" else text.encode()


def check_playbook(path: Path, check_paths: bool) -> bool:
    """The property for one playbook; whether it loaded."""
    try:
        plays = load_playbook(path, check_paths=check_paths)
    except PlaybookError as exc:
        assert exc.messages
        assert_located(exc.messages)
        return False
    inventory = load_inventory(path.parent / "hosts.ini")
    for p in plays:
        for tags, skip in ((None, None), (["a"], None), (None, ["never"]), (["tagged"], ["x"])):
            select_tasks(p, tags, skip)
        hosts = inventory.select(p.hosts)
        assert set(hosts) <= set(inventory.hosts)
        batches = serial_batches(hosts, p.serial)
        assert [h for b in batches for h in b] == hosts and all(batches)
    return True


def test_playbooks_load_or_report_located_errors() -> None:
    counts = {"examples": 0, "loaded": 0}
    before = peak_rss_kib()
    with tempfile.TemporaryDirectory(prefix="svcnet-fuzz-book-") as tmp:
        root = Path(tmp)
        (root / "hosts.ini").write_text(INVENTORY)
        (root / "hosts.txt").write_text("node1\n")
        (root / "c.yaml").write_text("kind: Cluster\n")
        (root / "sub").mkdir()
        (root / "sub" / "c.yaml").write_text("kind: Cluster\n")

        @fuzz_settings(300)
        @given(data=playbook_text(), check_paths=st.booleans())
        def prop(data: bytes, check_paths: bool) -> None:
            (root / "book.yaml").write_bytes(data)
            counts["examples"] += 1
            counts["loaded"] += check_playbook(root / "book.yaml", check_paths)

        prop()
    assert peak_rss_kib() - before < MEMORY_GROWTH_KIB
    print(f"fuzz: {counts['examples']} playbooks, {counts['loaded']} loaded")
    assert counts["loaded"] >= counts["examples"] // 10, counts
