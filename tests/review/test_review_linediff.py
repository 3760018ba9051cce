"""The line diff behind `svcnet diff`: its hunks turn the old text into the new one, exactly, and each
hunk holds the lines of one owner only (random texts, with repeated and moved lines)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from hypothesis import given, settings
from hypothesis import strategies as st

from svcnet.review import linediff
from svcnet.review.linediff import Hunk, hunks, regions

# Few distinct lines, so texts repeat and move lines (the cases the fast path hands to difflib).
LINES = st.lists(st.sampled_from([f"{o}{k}" for o in "abc" for k in range(4)]), max_size=40)


def owner(line: str) -> str:
    return line[0]


def apply(a: Sequence[str], found: Sequence[Hunk]) -> list[str]:
    """Apply hunks as `patch` does, checking every context and removed line against `a`."""
    out: list[str] = []
    pos = 0
    for h in sorted(found, key=lambda h: (h.old_start, h.new_start)):
        start = h.old_start - 1
        assert start >= pos, "hunks overlap"
        out += a[pos:start]
        assert len(out) == h.new_start - 1, "new line numbers are off"
        k = start
        for line in h.lines:
            mark, text = line[0], line[1:]
            if mark in " -":
                assert a[k] == text, (k, a[k], text)
                k += 1
            if mark in " +":
                out.append(text)
        pos = k
    return out + list(a[pos:])


@contextmanager
def anchors_everywhere() -> Iterator[None]:
    """Cut regions at anchors down to single lines: the path texts of 100,000s of lines take."""
    saved = linediff._SMALL
    linediff._SMALL = 1
    try:
        yield
    finally:
        linediff._SMALL = saved


def check(a: list[str], b: list[str], parts_a: Sequence[int] = (), parts_b: Sequence[int] = ()) -> list[Hunk]:
    with anchors_everywhere():
        cut = hunks(a, b, regions(a, b, parts_a, parts_b), owner, context=2)
    assert apply(a, cut) == b
    found = hunks(a, b, regions(a, b, parts_a, parts_b), owner, context=2)
    assert apply(a, found) == b
    for h in found:
        assert all(owner(line[1:]) == h.owner for line in h.lines), h
        assert h.added or h.removed
    if not parts_a:  # with parts, equal texts cut differently are a move from one part to another
        assert (found == []) == (a == b)
    return found


@settings(max_examples=400, deadline=None)
@given(LINES, LINES)
def test_hunks_turn_old_into_new(a: list[str], b: list[str]) -> None:
    check(a, b)


@settings(max_examples=200, deadline=None)
@given(LINES, st.lists(st.tuples(st.integers(0, 40), st.sampled_from(["a9", "b9", "c9", None]))))
def test_small_edits_of_a_text(a: list[str], edits: list[tuple[int, str | None]]) -> None:
    b = list(a)
    for at, line in edits:
        if line is None:
            if b:
                del b[at % len(b)]
        else:
            b.insert(at % (len(b) + 1), line)
    check(a, b)


@settings(max_examples=200, deadline=None)
@given(LINES, LINES, LINES, LINES)
def test_parts_are_diffed_apart(a1: list[str], a2: list[str], b1: list[str], b2: list[str]) -> None:
    check(a1 + a2, b1 + b2, [len(a1)], [len(b1)])


def test_close_changes_of_one_owner_are_one_hunk_with_real_line_numbers() -> None:
    a = ["x1", "a1", "a2", "a3", "a4", "b1"]
    b = ["x1", "a1", "a9", "a3", "a8", "b1", "b9"]
    found = check(a, b)
    # one hunk for both changes of a (the unchanged a3 between them is context), none of x1's lines
    assert [h.header() for h in found] == ["@@ -2,4 +2,4 @@ a", "@@ -6,1 +6,2 @@ b"]
    assert found[0].lines == (" a1", "-a2", "+a9", " a3", "-a4", "+a8")


def test_anchors_split_a_long_region_into_its_changes() -> None:
    a = [f"a{k}" for k in range(5000)]
    b = list(a)
    b[10], b[4990] = "a-10", "a-4990"
    found = regions(a, b)
    assert found == [linediff.Region(10, 11, 10, 11), linediff.Region(4990, 4991, 4990, 4991)]
    moved = a[:100] + a[200:] + a[100:200]  # no anchor holds: still a correct diff
    assert apply(a, hunks(a, moved, regions(a, moved), owner)) == moved


def test_context_stops_at_another_owner() -> None:
    a = ["a1", "a2", "b1", "b2", "b3", "b4", "c1"]
    b = ["a1", "a2", "b1", "b9", "b3", "b4", "c1"]
    (h,) = check(a, b)
    assert h.owner == "b" and h.header() == "@@ -3,4 +3,4 @@ b"
    assert h.lines == (" b1", "-b2", "+b9", " b3", " b4")
