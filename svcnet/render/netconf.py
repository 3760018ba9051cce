"""Render a node's address config (svcnet.desired.NetConf: bridge, sysctls, routes, pod netns).

`render_script` turns the desired state into an idempotent POSIX sh script of `ip`/`sysctl`
commands (every value shell-quoted), and `state_lines` into a stable text form used for diffs and
drift checks.

svcnet changes only what it created: the script marks every link it creates (the bridge, the pod
veths) with the alias `OWNER_ALIAS` and every route it adds with the protocol number `ROUTE_PROTO`;
the node agent refuses to run it while a link, route or netns it names exists unmarked, and deletes
only what carries the mark. The agent (svcnet/agent/node.py, one stdlib-only file) holds copies of
both values; tests/render/test_netconf.py checks they agree.
"""

from __future__ import annotations

import shlex
import threading
from functools import cache

import jinja2

from svcnet.desired import NetConf

POD_IFACE = "eth0"
# `ip link ... alias` of the links svcnet creates: the mark that makes a link svcnet's.
OWNER_ALIAS = "svcnet:owned"
# rtnetlink protocol of the routes svcnet adds (`ip route ... proto 115`): 0x73, "s". Numbers up to
# 4 belong to the kernel; routing daemons use their own (iproute2's rt_protos and FRR's 186-198,
# Calico's 80, osctld's 230): 115 is registered by none of them.
ROUTE_PROTO = 0x73


@cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("svcnet.render", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["q"] = lambda v: shlex.quote(str(v))
    env.filters["nodad"] = lambda v: " nodad" if ":" in str(v) else ""  # an IPv6 address: see the template
    return env.get_template("netconf.sh.j2")


_TEMPLATE_LOCK = threading.Lock()  # nodes render in parallel threads: compile the template once


def render_script(conf: NetConf) -> str:
    """Idempotent sh script that brings a node's address config to `conf`."""
    with _TEMPLATE_LOCK:
        template = _template()
    return template.render(c=conf, pod_iface=POD_IFACE, alias=OWNER_ALIAS, proto=ROUTE_PROTO)


def state_lines(conf: NetConf) -> list[str]:
    """Stable one-line-per-fact form of the address config (for diffs and drift checks)."""
    lines = [f"sysctl {s.key} = {s.value}" + (" (if present)" if s.optional else "") for s in conf.sysctls]
    lines.extend(f"bridge {conf.bridge} {a}" for a in conf.bridge_addresses)
    lines.extend(f"route {r.dst} via {r.via}" for r in conf.routes)
    for p in conf.pods:
        lines.extend(f"pod {p.namespace}/{p.name} netns {p.netns} veth {p.veth} {a} via {gw}" for a, gw in p.addresses)
    return lines
