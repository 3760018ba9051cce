"""Which tasks run (`--tags`/`--skip-tags`) and in which host batches (`serial`), as Ansible decides."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

from svcnet.playbook.model import ALL_TAGS, ALWAYS, NEVER, TAGGED, UNTAGGED, Play, Serial, SerialItem, Task

H = TypeVar("H")


def should_run(task_tags: Iterable[str], only_tags: Iterable[str] = (ALL_TAGS,), skip_tags: Iterable[str] = ()) -> bool:
    """Ansible's `Taggable.evaluate_tags` (an untagged task counts as tagged `untagged`)."""
    tags = frozenset(task_tags) or frozenset({UNTAGGED})
    only, skip = frozenset(only_tags), frozenset(skip_tags)
    run = True
    if only:
        run = (
            ALWAYS in tags
            or (ALL_TAGS in only and NEVER not in tags)
            or not tags.isdisjoint(only)
            or (TAGGED in only and tags != {UNTAGGED} and NEVER not in tags)
        )
    if run and skip:
        if ALL_TAGS in skip:
            run = ALWAYS in tags and ALWAYS not in skip
        elif not tags.isdisjoint(skip) or (TAGGED in skip and tags != {UNTAGGED}):
            run = False
    return run


def select_tasks(play: Play, tags: Iterable[str] | None = None, skip_tags: Iterable[str] | None = None) -> list[Task]:
    """The play's tasks that run with `--tags` (default `all`) and `--skip-tags`."""
    only = tuple(tags) if tags else (ALL_TAGS,)
    skip = tuple(skip_tags or ())
    return [t for t in play.tasks if should_run(t.tags, only, skip)]


def serial_size(item: SerialItem, total: int) -> int:
    """Ansible's `pct_to_int`: "30%" of `total` rounded down, at least 1; ints as they are."""
    if isinstance(item, str) and item.strip().endswith("%"):
        return int(int(item.strip()[:-1]) / 100.0 * total) or 1
    return int(item)


def serial_batches(hosts: Sequence[H], serial: Serial) -> list[list[H]]:
    """Split hosts into batches as Ansible's `_get_serialized_batches` (a list cycles to its last item)."""
    remaining = list(hosts)
    if not remaining:
        return []
    items: tuple[SerialItem, ...] = (serial,) if isinstance(serial, int | str) else tuple(serial) if serial else (0,)
    batches: list[list[H]] = []
    cur = 0
    while remaining:
        size = serial_size(items[cur], len(hosts))
        if size <= 0:
            batches.append(remaining)
            break
        batches.append(remaining[:size])
        remaining = remaining[size:]
        cur = min(cur + 1, len(items) - 1)
    return batches
