"""What the fuzz tests share: settings, hostile values, and mutations of objects and text.

Every property runs `SVCNET_FUZZ_EXAMPLES` examples when that is set (a bigger run, e.g.
`SVCNET_FUZZ_EXAMPLES=5000 pytest tests/fuzz`), else its own default, chosen so that the whole
directory takes well under a minute on two cores. Hypothesis's example database is off: the
tests write nothing into the repository, and a failure prints the example and its blob.
"""

from __future__ import annotations

import copy
import os
import re
import resource
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import yaml
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES_ENV = "SVCNET_FUZZ_EXAMPLES"
# Per example: the property is "bounded time", not speed. Examples take milliseconds; 5 s leaves
# room for a shared, loaded 2-core machine and for the first example compiling the schemas.
DEADLINE = timedelta(seconds=5)
# What a fuzzed call may add to the test process's peak memory: the inputs are a few KB, so
# anything near this is an amplification bug (the alias bomb took 536 MB from 120 KB).
MEMORY_GROWTH_KIB = 512 * 1024
LOCATED = re.compile(r"^[^\n:]+:[1-9]\d*:[1-9]\d*: [^\n]+: [^\n]+$")


def examples(default: int) -> int:
    return int(os.environ.get(EXAMPLES_ENV) or default)


def fuzz_settings(default: int) -> settings:
    return settings(
        max_examples=examples(default),
        deadline=DEADLINE,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


def peak_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def assert_located(messages: list[str]) -> None:
    """Every message is `file:line:col: path: message` (one line, line and column from 1)."""
    for m in messages:
        assert LOCATED.match(m), f"not a located error: {m!r}"


# ---------------------------------------------------------------- hostile values

NASTY_STRINGS = [
    "", " ", "\t", "\n", "a\nb", "-", "--", "*", "&", "!", "%", "@", "~", "#", ":", "[", "{",
    "$(reboot)", "`id`", "; rm -rf /", "a'b", 'a"b', "\\", "a b", "0", "-1", "1e3", "0x10", "010",
    "null", "yes", "no", "on", "NaN", ".inf", "é", "\u202e", "\x7f", "\x1b[31m", "x" * 300,
    "10.96.0.1", "10.96.0.1/32", "::1", "fe80::1%eth0", "0.0.0.0", "255.255.255.255", "127.0.0.1",
    "192.168.56.11", "10.244.1.5", "224.0.0.1", "1.2.3", "1.2.3.4.5", "01.02.03.04", " 10.0.0.1",
    "10.0.0.0/33", "10.0.0.1/24", "0.0.0.0/0", "::/0", "2001:db8::/64", "TCP", "UDP", "SCTP", "tcp",
    "ClientIP", "Local", "Cluster", "NodePort", "LoadBalancer", "ClusterIP", "None", "http", "node1",
    "node2", "default", "KUBE-SERVICES", "-j ACCEPT", "--dport 22", "30000", "30000-32767",
    "32767-30000", "65536", "a" * 64, "a" * 254, "A", "a_b", "a.b", "a/b", "k8s.io/name", "veth",
    "cni0", "lo", "eth0:1", "a" * 16,
]
NASTY_INTS = [0, 1, -1, 2, 14, 31, 32, 53, 80, 443, 8080, 30000, 32767, 32768, 65535, 65536,
              2**31 - 1, 2**31, 2**63, -(2**63), 10**30, 86400, 86401]

_scalars = st.one_of(
    st.sampled_from(NASTY_STRINGS),
    st.sampled_from(NASTY_INTS),
    st.text(max_size=12),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.none(),
)
# Mapping keys as YAML allows them: not only strings (JSON's only kind) but ints, bools and null.
keys = st.one_of(st.sampled_from(["name", "port", "spec", "x", ""]), st.text(max_size=6), st.integers(),
                 st.booleans(), st.none())
nasty = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=6,
)


# Values like the one they replace, so that a mutated document often still passes the schema
# and reaches the semantic checks and the renderer with an unusual value.
IPS = ["0.0.0.0", "255.255.255.255", "127.0.0.1", "10.96.0.0", "10.96.0.1", "10.111.255.255", "10.244.1.0",
       "10.244.1.255", "192.168.56.11", "192.168.56.12", "224.0.0.1", "169.254.0.1", "1.2.3.4", "::", "::1",
       "fd00::1", "2001:db8::1", "::ffff:10.96.0.1",
       "010.096.000.001", "192.168.099.022", "127.000.000.001"]  # the API server's legacy spellings
CIDRS = ["0.0.0.0/0", "10.0.0.0/8", "10.96.0.0/12", "10.96.0.0/32", "10.0.0.0/31", "10.244.1.0/24",
         "10.244.0.0/16", "10.244.1.1/24", "192.168.56.0/24", "::/0", "fd00::/64", "2001:db8::/120",
         " 203.0.113.000/025", "010.0.0.0/008\t"]  # legal only in loadBalancerSourceRanges
NAMES = ["a", "a-b", "a.b", "node1", "node2", "node3", "x" * 63, "x" * 64, "x" * 253, "A", "-a", "a-", "0", "1a",
         "default", "kube-system", "http", "dns", "app", "web"]
PORTS = [0, 1, 22, 53, 80, 443, 8080, 20000, 30000, 30005, 32767, 65535, 65536, -1]


def similar(value: Any) -> st.SearchStrategy[Any]:
    """Values of the same kind as `value` (an address, a CIDR, a name, a port, a flag)."""
    if isinstance(value, bool):
        return st.sampled_from([True, False, "true", 1, None])
    if isinstance(value, int):
        return st.sampled_from(PORTS) | st.integers(-5, 70000)
    if isinstance(value, str) and "/" in value and value[:1].isdigit():
        return st.sampled_from(CIDRS)
    if isinstance(value, str) and (value.count(".") == 3 or ":" in value) and value[:1].isalnum():
        return st.sampled_from(IPS)
    if isinstance(value, str):
        return st.sampled_from([*NAMES, value.upper(), value + "-", value * 5])
    if isinstance(value, list) and value:
        return st.lists(st.sampled_from(value), max_size=len(value) + 2)
    return nasty


# ---------------------------------------------------------------- object mutations


def _slots(obj: Any) -> Iterator[tuple[Any, Any]]:
    """Every (container, key) pair in a tree of dicts and lists."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield obj, k
            yield from _slots(v)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield obj, i
            yield from _slots(v)


def mutate_object(draw: Callable[[st.SearchStrategy[Any]], Any], obj: Any, max_ops: int = 3) -> Any:
    """A copy of `obj` with up to `max_ops` random edits: replace, delete, duplicate or add."""
    obj = copy.deepcopy(obj)
    for _ in range(draw(st.integers(0, max_ops))):
        slots = list(_slots(obj))
        if not slots:
            break
        container, key = draw(st.sampled_from(slots))
        op = draw(st.sampled_from(["similar", "similar", "similar", "replace", "delete", "duplicate", "add", "retype"]))
        if op == "similar":
            container[key] = draw(similar(container[key]))
        elif op == "replace":
            container[key] = draw(nasty)
        elif op == "retype":  # the same value as another type: 80 -> "80", "80" -> 80, x -> [x]
            value = container[key]
            container[key] = draw(st.sampled_from([str(value), [value], {"v": value}, None]))
        elif op == "delete":
            del container[key]
        elif op == "duplicate" and isinstance(container, list):
            container.insert(key, copy.deepcopy(container[key]))
        elif op == "add" and isinstance(container, dict):
            container[draw(st.sampled_from([key]) | keys)] = draw(nasty)
    return obj


def dump(docs: list[Any], draw: Callable[[st.SearchStrategy[Any]], Any]) -> str:
    """YAML text of `docs`, block or flow style."""
    return yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=draw(st.sampled_from([False, None, True])),
                              allow_unicode=draw(st.booleans()))


# ---------------------------------------------------------------- text mutations

TOKENS = [
    ": ", "- ", "[", "]", "{", "}", ",", "&a ", "*a", "&b [*a, *a] ", "!!str ", "!!int ", "!!binary ",
    "!!python/object:os.system ", "!!set ", "!!timestamp ", "<<: *a\n", "? ", "|\n", ">-\n", "#", "'", '"',
    "\t", "\r", "\n", "\r\n", "---\n", "...\n", "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "\ufeff", "\\",
    "%", "@", "`", "\u2028", "\x85", "~", "null", "2001-12-14t21:59:43.10-05:00", "0o17", "1_000", ".nan",
    "-.inf", "9" * 5000, "? [a, b]\n: c\n", "{[1]: 2}", "1: x\n", "=", "[web]\n", "[web:vars]\n",
    "[web:children]\n", "ansible_port=", " #", ";",
]


def mutate_text(draw: Callable[[st.SearchStrategy[Any]], Any], text: str, max_ops: int = 4) -> str:
    """`text` with up to `max_ops` edits of characters, tokens and lines."""
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(st.sampled_from(["char", "token", "delete", "dupline", "dropline", "swaplines", "indent", "dupkey"]))
        lines = text.split("\n")
        at = draw(st.integers(0, len(text)))
        if op == "char":
            char = draw(st.characters(codec="utf-8") | st.sampled_from("\x00\x01 \t:-[]{}#&*!|>'\"%@`,?"))
            text = text[:at] + char + text[at + 1:]
        elif op == "token":
            text = text[:at] + draw(st.sampled_from(TOKENS) | st.text(max_size=4)) + text[at:]
        elif op == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 20)):]
        elif op in ("dupline", "dropline", "indent", "dupkey") and lines:
            i = draw(st.integers(0, len(lines) - 1))
            if op == "dupline" or (op == "dupkey" and ":" in lines[i]):
                lines.insert(i, lines[i])  # a duplicate key where the line is `key: value`
            elif op == "dropline":
                del lines[i]
            elif op == "indent":
                lines[i] = draw(st.sampled_from(["", " ", "  ", "\t", "    "])) + lines[i].lstrip(" ")
            text = "\n".join(lines)
        elif op == "swaplines" and len(lines) > 1:
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
    return text


def encode(draw: Callable[[st.SearchStrategy[Any]], Any], text: str) -> bytes:
    """Mostly UTF-8; sometimes a stray non-UTF-8 byte, a NUL or a surrogate escape."""
    data = text.encode("utf-8", "surrogatepass")
    kind = draw(st.sampled_from(["utf8"] * 8 + ["latin", "nul"]))
    if kind == "latin" and data:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + b"\xff" + data[at + 1:]
    elif kind == "nul":
        data += b"\x00"
    return data
