"""A line diff for two rendered texts that are mostly equal, fast on 100,000s of lines.

Rendered rules change in a few places: the common head and tail of each part of the text are
cut off first (whole-list comparisons, no per-line Python work), and a long rest is cut in two at a
line both sides hold once (an anchor, as in patience diff), again and again. In what remains the
lines found on one side only are the changes: unchanged lines pair up in order, so the change
regions follow from the positions of the changed lines alone. Where that pairing does not hold
(a line moved, or repeated a different number of times) the region falls back to difflib.

The hunks then follow a text's owners (for rules: service ports): each hunk holds the changes of
one owner, with unchanged lines of that owner only as context.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise

CONTEXT = 3


@dataclass(frozen=True, slots=True)
class Region:
    """Lines old[i1:i2] became new[j1:j2]; every line outside regions is unchanged."""

    i1: int
    i2: int
    j1: int
    j2: int


_BLOCK = 4096  # lines compared per slice while looking for the first difference


def _head(a: Sequence[str], b: Sequence[str], ia: int, ib: int, ja: int, jb: int) -> int:
    """How many lines a[ia:ja] and b[ib:jb] share at their start: whole blocks compared as lists
    (in C), then the first unequal block halved."""
    n = min(ja - ia, jb - ib)
    done = 0
    while done < n:
        step = min(_BLOCK, n - done)
        if a[ia + done:ia + done + step] != b[ib + done:ib + done + step]:
            break
        done += step
    else:
        return n
    low, high = done, min(done + _BLOCK, n)
    while low < high:
        mid = (low + high + 1) // 2
        if a[ia + done:ia + mid] == b[ib + done:ib + mid]:
            low = mid
        else:
            high = mid - 1
    return low


def _tail(a: Sequence[str], b: Sequence[str], ia: int, ib: int, ja: int, jb: int) -> int:
    """How many lines a[ia:ja] and b[ib:jb] share at their end."""
    n = min(ja - ia, jb - ib)
    done = 0
    while done < n:
        step = min(_BLOCK, n - done)
        if a[ja - done - step:ja - done] != b[jb - done - step:jb - done]:
            break
        done += step
    else:
        return n
    low, high = done, min(done + _BLOCK, n)
    while low < high:
        mid = (low + high + 1) // 2
        if a[ja - mid:ja - done] == b[jb - mid:jb - done]:
            low = mid
        else:
            high = mid - 1
    return low


def _set_regions(a: Sequence[str], b: Sequence[str], ia: int, ja: int, ib: int, jb: int) -> list[Region] | None:
    """Regions of a[ia:ja] against b[ib:jb] from the lines only one side has, or None if the
    unchanged lines do not pair up in order."""
    sa, sb = a[ia:ja], b[ib:jb]
    in_a, in_b = set(sa), set(sb)
    kept_a = [line for line in sa if line in in_b]
    kept_b = [line for line in sb if line in in_a]
    if kept_a != kept_b:
        return None
    gone = [k for k, line in enumerate(sa) if line not in in_b]
    came = [k for k, line in enumerate(sb) if line not in in_a]
    out: list[Region] = []
    g = c = 0
    while g < len(gone) or c < len(came):
        # the number of unchanged lines before the next change is the same on both sides
        before_g = gone[g] - g if g < len(gone) else None
        before_c = came[c] - c if c < len(came) else None
        kept = min(x for x in (before_g, before_c) if x is not None)
        g1, c1 = g, c
        while g < len(gone) and gone[g] - g1 == kept + (g - g1):
            g += 1
        while c < len(came) and came[c] - c1 == kept + (c - c1):
            c += 1
        i1, j1 = ia + kept + g1, ib + kept + c1
        out.append(Region(i1, i1 + g - g1, j1, j1 + c - c1))
    return out


def _difflib_regions(a: Sequence[str], b: Sequence[str], ia: int, ja: int, ib: int, jb: int) -> list[Region]:
    matcher = difflib.SequenceMatcher(None, a[ia:ja], b[ib:jb], autojunk=False)
    return [Region(ia + i1, ia + i2, ib + j1, ib + j2)
            for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]


def regions(a: Sequence[str], b: Sequence[str], parts_a: Sequence[int] = (), parts_b: Sequence[int] = ()
            ) -> list[Region]:
    """The change regions between the line lists a and b.

    `parts_a`/`parts_b` cut both texts into corresponding parts at these line indices (for a
    rendered ruleset: its tables and, in each, declarations and rules), so that a change in one
    part does not keep the others' common head and tail from being cut off.
    """
    bounds_a = [0, *parts_a, len(a)]
    bounds_b = [0, *parts_b, len(b)]
    if len(bounds_a) != len(bounds_b):
        bounds_a, bounds_b = [0, len(a)], [0, len(b)]
    out: list[Region] = []
    for (ia, ja), (ib, jb) in zip(pairwise(bounds_a), pairwise(bounds_b), strict=True):
        if a[ia:ja] != b[ib:jb]:
            out.extend(_split(a, b, ia, ja, ib, jb))
    return out


_SMALL = 2048  # lines: below this, a region is diffed by its changed lines at once
_TRIES = 16  # lines tried as an anchor around the middle of a region


def _split(a: Sequence[str], b: Sequence[str], ia: int, ja: int, ib: int, jb: int) -> list[Region]:
    """Regions of a[ia:ja] against b[ib:jb]: common head and tail cut off, then a large rest cut in
    two at a line both sides hold once (an anchor, found by list scans in C), until it is small."""
    head = _head(a, b, ia, ib, ja, jb)
    ia, ib = ia + head, ib + head
    tail = _tail(a, b, ia, ib, ja, jb)
    ja, jb = ja - tail, jb - tail
    if ia == ja or ib == jb:
        return [Region(ia, ja, ib, jb)] if (ia, ib) != (ja, jb) else []
    if min(ja - ia, jb - ib) > _SMALL:
        anchor = _anchor(a, b, ia, ja, ib, jb)
        if anchor is not None:
            k, r = anchor
            return _split(a, b, ia, k, ib, r) + _split(a, b, k + 1, ja, r + 1, jb)
    found = _set_regions(a, b, ia, ja, ib, jb)
    return found if found is not None else _difflib_regions(a, b, ia, ja, ib, jb)


def _anchor(a: Sequence[str], b: Sequence[str], ia: int, ja: int, ib: int, jb: int) -> tuple[int, int] | None:
    """(k, r) with a[k] == b[r] a line that a[ia:ja] and b[ib:jb] each hold exactly once."""
    mid = (ia + ja) // 2
    for k in range(mid, min(mid + _TRIES, ja)):
        line = a[k]
        r = _index(b, line, ib, jb)
        if r is not None and _index(b, line, r + 1, jb) is None and _index(a, line, ia, k) is None \
                and _index(a, line, k + 1, ja) is None:
            return k, r
    return None


def _index(lines: Sequence[str], line: str, lo: int, hi: int) -> int | None:
    try:
        return lines.index(line, lo, hi)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Hunk:
    """A unified-diff hunk about one owner: `lines` carry their ' ', '-' or '+' mark."""

    owner: str
    where: str  # what the header names besides the owner, e.g. the table
    old_start: int  # 1-based, as in `@@ -old_start,old_len +new_start,new_len @@`
    new_start: int
    lines: tuple[str, ...]

    @property
    def removed(self) -> int:
        return sum(1 for line in self.lines if line[0] == "-")

    @property
    def added(self) -> int:
        return sum(1 for line in self.lines if line[0] == "+")

    def header(self) -> str:
        old_len = sum(1 for line in self.lines if line[0] != "+")
        new_len = sum(1 for line in self.lines if line[0] != "-")
        label = f"{self.where} {self.owner}" if self.where else self.owner
        return f"@@ -{_range(self.old_start, old_len)} +{_range(self.new_start, new_len)} @@ {label}"


def _range(start: int, length: int) -> str:
    # unified diff: an empty range names the line before it
    return f"{start if length else start - 1},{length}"


Owner = Callable[[str], str]  # a line -> what it belongs to
Belongs = Callable[[str, str], bool]  # (line, owner) -> whether the line is the owner's
Where = Callable[[bool, int], str]  # (new side?, line index) -> the part of the text


def hunks(a: Sequence[str], b: Sequence[str], found: Sequence[Region], owner: Owner,
          where: Where = lambda _new, _i: "", context: int = CONTEXT, belongs: Belongs | None = None
          ) -> list[Hunk]:
    """The changes as hunks of one owner each, in text order, with up to `context` unchanged lines
    of the same owner around them; changes of one owner that close are one hunk, as in `diff -u`.

    `where(new side?, line index)` names the part of the text a hunk is in (for rules: the table);
    `belongs(line, owner)` may answer `owner(line) == owner` faster.
    """
    same_owner: Belongs = belongs or (lambda line, who: owner(line) == who)
    segments: dict[str, list[tuple[int, int, int, int]]] = {}
    for r in found:
        for who, *span in _split_by_owner(a, b, r, owner):
            segments.setdefault(who, []).append((span[0], span[1], span[2], span[3]))
    out: list[Hunk] = []
    for who, spans in segments.items():
        out.extend(_owner_hunks(a, b, who, spans, same_owner, where, context))
    out.sort(key=lambda h: (h.old_start, h.new_start))
    return out


def _same(a: Sequence[str], b: Sequence[str], i: int, j: int, who: str, belongs: Belongs) -> bool:
    """a[i] is an unchanged line of `who`, paired with b[j]."""
    return 0 <= i < len(a) and 0 <= j < len(b) and a[i] == b[j] and belongs(a[i], who)


def _owner_hunks(a: Sequence[str], b: Sequence[str], who: str, spans: list[tuple[int, int, int, int]],
                 belongs: Belongs, where: Where, context: int) -> list[Hunk]:
    spans.sort()
    merged: list[list[tuple[int, int, int, int]]] = []
    for span in spans:
        if merged:
            last = merged[-1][-1]
            gap = span[0] - last[1]
            if gap == span[2] - last[3] and gap <= 2 * context and all(
                    _same(a, b, last[1] + k, last[3] + k, who, belongs) for k in range(gap)):
                merged[-1].append(span)
                continue
        merged.append([span])
    out = []
    for group in merged:
        i1, _, j1, _ = group[0]
        _, i2, _, j2 = group[-1]
        before = 0
        while before < context and _same(a, b, i1 - before - 1, j1 - before - 1, who, belongs):
            before += 1
        after = 0
        while after < context and _same(a, b, i2 + after, j2 + after, who, belongs):
            after += 1
        lines = [" " + line for line in a[i1 - before:i1]]
        prev_i = i1
        for si1, si2, sj1, sj2 in group:
            lines += [" " + line for line in a[prev_i:si1]]
            lines += ["-" + line for line in a[si1:si2]]
            lines += ["+" + line for line in b[sj1:sj2]]
            prev_i = si2
        lines += [" " + line for line in a[i2:i2 + after]]
        label = where(False, i1) if i1 < i2 else where(True, j1)
        out.append(Hunk(who, label, i1 - before + 1, j1 - before + 1, tuple(lines)))
    return out


def _split_by_owner(a: Sequence[str], b: Sequence[str], r: Region, owner: Owner
                    ) -> list[tuple[str, int, int, int, int]]:
    """The region's removed and added lines cut into runs of one owner, paired by owner in order;
    a run the other side has no run of its owner for becomes a pure removal or addition."""
    runs_a = _runs([owner(line) for line in a[r.i1:r.i2]], r.i1)
    runs_b = _runs([owner(line) for line in b[r.j1:r.j2]], r.j1)
    left_a = Counter(run[0] for run in runs_a)
    left_b = Counter(run[0] for run in runs_b)
    out = []
    ka = kb = 0
    while ka < len(runs_a) or kb < len(runs_b):
        ra = runs_a[ka] if ka < len(runs_a) else None
        rb = runs_b[kb] if kb < len(runs_b) else None
        if ra is not None and rb is not None and ra[0] == rb[0]:
            out.append((ra[0], ra[1], ra[2], rb[1], rb[2]))
            left_a[ra[0]] -= 1
            left_b[rb[0]] -= 1
            ka, kb = ka + 1, kb + 1
        elif ra is not None and (rb is None or left_b[ra[0]] <= 0 or left_a[rb[0]] > 0):
            at = rb[1] if rb is not None else r.j2
            out.append((ra[0], ra[1], ra[2], at, at))
            left_a[ra[0]] -= 1
            ka += 1
        else:
            assert rb is not None
            at = ra[1] if ra is not None else r.i2
            out.append((rb[0], at, at, rb[1], rb[2]))
            left_b[rb[0]] -= 1
            kb += 1
    return out


def _runs(owners: list[str], offset: int) -> list[tuple[str, int, int]]:
    out: list[tuple[str, int, int]] = []
    for k, who in enumerate(owners):
        if out and out[-1][0] == who and out[-1][2] == offset + k:
            out[-1] = (who, out[-1][1], offset + k + 1)
        else:
            out.append((who, offset + k, offset + k + 1))
    return out
