"""Ansible-style run output, as pure formatting (the default stdout callback's exact text).

- Banners: `PLAY [name] ***...` / `TASK [name] ***...`: the message, a space, and stars to
  column 80 (Ansible's `Display.banner` with its 79-column minimum; at least 3 stars).
  Ansible prints an empty line before each banner; `banner_block()` includes it.
- Host lines: `ok: [node1]`, `changed: [node1]`, `skipping: [node1]`,
  `fatal: [node1]: FAILED! => {...}`, `fatal: [node1]: UNREACHABLE! => {...}`; the result is
  JSON with sorted keys, as the callback's `_dump_results`.
- `PLAY RECAP`: one line per host, sorted by name, `%-26s` host then `key=%-4s` counters
  (`hostcolor`/`colorize` of ansible.utils.color). Colour codes only when asked
  (`use_color()` says yes for a TTY); coloured host names pad to 37 as Ansible does.
- Exit codes: Ansible's 0 ok, 2 a host failed, 4 a host unreachable (4 wins over 2);
  svcnet adds 8: a rollback happened on some host (wins over both; the failure behind the
  rollback is also in the recap).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

WIDTH = 80
MIN_STARS = 3

OK, CHANGED, FAILED, UNREACHABLE, SKIPPED, RESCUED, IGNORED = (
    "ok",
    "changed",
    "failed",
    "unreachable",
    "skipped",
    "rescued",
    "ignored",
)
STATUSES = (OK, CHANGED, FAILED, UNREACHABLE, SKIPPED, RESCUED, IGNORED)

EXIT_OK, EXIT_FAILED, EXIT_UNREACHABLE, EXIT_ROLLBACK = 0, 2, 4, 8

# Ansible's default colours (config COLOR_*) and their SGR codes (ansible.utils.color).
_SGR = {
    "green": "0;32",
    "yellow": "0;33",
    "red": "0;31",
    "bright red": "1;31",
    "cyan": "0;36",
    "bright purple": "1;35",
}
COLOR_OK, COLOR_CHANGED, COLOR_ERROR = "green", "yellow", "red"
COLOR_UNREACHABLE, COLOR_SKIP, COLOR_WARN = "bright red", "cyan", "bright purple"
_STATUS_COLOR = {
    OK: COLOR_OK,
    CHANGED: COLOR_CHANGED,
    FAILED: COLOR_ERROR,
    UNREACHABLE: COLOR_UNREACHABLE,
    SKIPPED: COLOR_SKIP,
    RESCUED: COLOR_OK,
    IGNORED: COLOR_WARN,
}


def use_color(stream: IO[str], environ: Mapping[str, str] = os.environ) -> bool:
    """Colour when the stream is a TTY, unless NO_COLOR/ANSIBLE_NOCOLOR; ANSIBLE_FORCE_COLOR forces it."""
    if environ.get("ANSIBLE_FORCE_COLOR"):
        return True
    if environ.get("NO_COLOR") or environ.get("ANSIBLE_NOCOLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def stringc(text: str, color: str, enabled: bool = True) -> str:
    """`text` in an ANSI colour (each line separately), or unchanged when not enabled."""
    if not enabled:
        return text
    return "\n".join(f"\033[{_SGR[color]}m{t}\033[0m" for t in text.split("\n"))


def banner(msg: str, width: int = WIDTH) -> str:
    """`msg` followed by a space and stars up to `width` columns (at least 3 stars)."""
    msg = msg.strip()
    return f"{msg} {'*' * max(MIN_STARS, width - 1 - len(msg))}"


def banner_block(msg: str, width: int = WIDTH) -> str:
    """A banner as Ansible displays it: preceded by an empty line."""
    return "\n" + banner(msg, width)


def play_banner(name: str, width: int = WIDTH) -> str:
    name = name.strip()
    return banner(f"PLAY [{name}]" if name else "PLAY", width)


def task_banner(name: str, width: int = WIDTH) -> str:
    return banner(f"TASK [{name.strip()}]", width)


def dump_result(result: Mapping[str, Any] | str) -> str:
    """A task result as the default callback shows it: JSON, keys sorted."""
    obj = {"msg": result} if isinstance(result, str) else dict(result)
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str)


def host_line(status: str, host: str, result: Mapping[str, Any] | str | None = None, color: bool = False) -> str:
    """One per-host line of a task: ok / changed / skipping / fatal FAILED! / fatal UNREACHABLE!."""
    if status == FAILED:
        payload = {"changed": False, "msg": result} if isinstance(result, str) else dict(result or {})
        text = f"fatal: [{host}]: FAILED! => {dump_result(payload)}"
    elif status == UNREACHABLE:
        payload = (
            {"changed": False, "msg": result, "unreachable": True} if isinstance(result, str) else dict(result or {})
        )
        text = f"fatal: [{host}]: UNREACHABLE! => {dump_result(payload)}"
    elif status == SKIPPED:
        text = f"skipping: [{host}]"
    elif status in (OK, CHANGED):
        text = f"{status}: [{host}]"
        if result:
            text += f" => {dump_result(result)}"
    else:
        raise ValueError(f"unknown task status {status!r}")
    return stringc(text, _STATUS_COLOR[status], color)


@dataclass
class HostStats:
    ok: int = 0
    changed: int = 0
    unreachable: int = 0
    failures: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0
    rollbacks: int = 0


_COUNTER = {
    OK: "ok",
    CHANGED: "changed",
    UNREACHABLE: "unreachable",
    FAILED: "failures",
    SKIPPED: "skipped",
    RESCUED: "rescued",
    IGNORED: "ignored",
}


@dataclass
class Stats:
    """Per-host counters of a run (Ansible's AggregateStats); hosts appear as they are recorded."""

    hosts: dict[str, HostStats] = field(default_factory=dict)

    def record(self, host: str, status: str) -> None:
        """Count one task result. `changed` also counts as `ok`, as Ansible counts it."""
        if status not in _COUNTER:
            raise ValueError(f"unknown task status {status!r}")
        st = self.hosts.setdefault(host, HostStats())
        if status == CHANGED:
            st.ok += 1
        setattr(st, _COUNTER[status], getattr(st, _COUNTER[status]) + 1)

    def rollback(self, host: str) -> None:
        """Note that svcnet rolled this host back (exit code 8)."""
        self.hosts.setdefault(host, HostStats()).rollbacks += 1

    def summarize(self, host: str) -> HostStats:
        return self.hosts.get(host, HostStats())

    def exit_code(self) -> int:
        """8 a rollback happened, else 4 a host was unreachable, else 2 a host failed, else 0."""
        values = self.hosts.values()
        if any(s.rollbacks for s in values):
            return EXIT_ROLLBACK
        if any(s.unreachable for s in values):
            return EXIT_UNREACHABLE
        if any(s.failures for s in values):
            return EXIT_FAILED
        return EXIT_OK


def colorize(lead: str, num: int, color: str | None, enabled: bool = False) -> str:
    """`lead=num` padded as Ansible's `colorize` (`%s=%-4s`); coloured only when non-zero."""
    text = f"{lead}={num!s:<4}"
    return stringc(text, color, True) if enabled and color and num != 0 else text


def hostcolor(host: str, st: HostStats, enabled: bool = False) -> str:
    """Ansible's `hostcolor`: `%-26s`, or the coloured name padded to 37."""
    if not enabled:
        return f"{host:<26}"
    color = COLOR_ERROR if (st.failures or st.unreachable) else COLOR_CHANGED if st.changed else COLOR_OK
    return f"{stringc(host, color):<37}"


def recap_line(host: str, st: HostStats, color: bool = False) -> str:
    parts = [
        colorize("ok", st.ok, COLOR_OK, color),
        colorize("changed", st.changed, COLOR_CHANGED, color),
        colorize("unreachable", st.unreachable, COLOR_UNREACHABLE, color),
        colorize("failed", st.failures, COLOR_ERROR, color),
        colorize("skipped", st.skipped, COLOR_SKIP, color),
        colorize("rescued", st.rescued, COLOR_OK, color),
        colorize("ignored", st.ignored, COLOR_WARN, color),
    ]
    return f"{hostcolor(host, st, color)} : {' '.join(parts)}"


def format_recap(stats: Stats, color: bool = False, width: int = WIDTH, hosts: Iterable[str] | None = None) -> str:
    """The `PLAY RECAP` block as Ansible prints it: blank line, banner, sorted host lines, blank line."""
    names = sorted(stats.hosts if hosts is None else hosts)
    lines = ["", banner("PLAY RECAP", width)]
    lines += [recap_line(h, stats.summarize(h), color) for h in names]
    lines.append("")
    return "\n".join(lines) + "\n"
