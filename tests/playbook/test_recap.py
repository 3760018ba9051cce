"""Ansible-style output: banners, host lines, PLAY RECAP spacing, colour, exit codes."""

from __future__ import annotations

import io

import pytest

from svcnet.playbook import recap
from svcnet.playbook.recap import Stats


def test_banners_pad_to_80_columns() -> None:
    line = recap.play_banner("svcnet demo")
    assert line.startswith("PLAY [svcnet demo] *") and len(line) == 80 and set(line[19:]) == {"*"}
    assert recap.task_banner(" push rules ") == "TASK [push rules] " + "*" * 62
    assert recap.play_banner("") == "PLAY " + "*" * 75
    long = recap.task_banner("x" * 100)
    assert long.endswith(" ***") and len(long) == 6 + 100 + 1 + 1 + 3  # at least 3 stars
    assert recap.banner_block("PLAY RECAP") == "\nPLAY RECAP " + "*" * 69


def test_host_lines() -> None:
    assert recap.host_line("ok", "node1") == "ok: [node1]"
    assert recap.host_line("changed", "node1") == "changed: [node1]"
    assert recap.host_line("skipped", "node2") == "skipping: [node2]"
    assert recap.host_line("failed", "node1", "iptables-restore: line 3 failed") == (
        'fatal: [node1]: FAILED! => {"changed": false, "msg": "iptables-restore: line 3 failed"}'
    )
    assert recap.host_line("unreachable", "node3", "timed out") == (
        'fatal: [node3]: UNREACHABLE! => {"changed": false, "msg": "timed out", "unreachable": true}'
    )
    assert recap.host_line("ok", "n", {"rules": 12}) == 'ok: [n] => {"rules": 12}'
    with pytest.raises(ValueError):
        recap.host_line("bogus", "n")


def test_colour_only_when_asked() -> None:
    assert recap.host_line("changed", "n", color=True) == "\033[0;33mchanged: [n]\033[0m"
    assert recap.host_line("failed", "n", "x", color=True).startswith("\033[0;31mfatal: [n]: FAILED!")
    assert not recap.use_color(io.StringIO(), environ={})
    assert recap.use_color(io.StringIO(), environ={"ANSIBLE_FORCE_COLOR": "1"})

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert recap.use_color(Tty(), environ={})
    assert not recap.use_color(Tty(), environ={"NO_COLOR": "1"})


def _stats() -> Stats:
    stats = Stats()
    for status in ("ok", "changed", "ok"):
        stats.record("node1", status)
    stats.record("node2", "ok")
    stats.record("node2", "failed")
    stats.record("node2", "skipped")
    stats.record("a-long-host-name-over-26-chars", "ignored")
    return stats


def test_play_recap_matches_ansible_format() -> None:
    text = recap.format_recap(_stats())
    assert text == (
        "\nPLAY RECAP " + "*" * 69 + "\n"
        "a-long-host-name-over-26-chars : ok=0    changed=0    unreachable=0    failed=0    "
        "skipped=0    rescued=0    ignored=1   \n"
        "node1                      : ok=3    changed=1    unreachable=0    failed=0    "
        "skipped=0    rescued=0    ignored=0   \n"
        "node2                      : ok=1    changed=0    unreachable=0    failed=1    "
        "skipped=1    rescued=0    ignored=0   \n"
        "\n"
    )


def test_coloured_recap_pads_like_ansible() -> None:
    line = recap.recap_line("node2", _stats().summarize("node2"), color=True)
    assert line.startswith("\033[0;31mnode2\033[0m" + " " * 21 + " : \033[0;32mok=1   \033[0m changed=0    ")
    assert "\033[0;31mfailed=1   \033[0m" in line and "\033[0;36mskipped=1   \033[0m" in line


def test_exit_codes() -> None:
    stats = Stats()
    stats.record("a", "changed")
    assert stats.exit_code() == recap.EXIT_OK == 0
    stats.record("a", "failed")
    assert stats.exit_code() == recap.EXIT_FAILED == 2
    stats.record("b", "unreachable")
    assert stats.exit_code() == recap.EXIT_UNREACHABLE == 4  # unreachable wins, as in Ansible
    stats.rollback("a")
    assert stats.exit_code() == recap.EXIT_ROLLBACK == 8
    with pytest.raises(ValueError):
        stats.record("a", "bogus")
