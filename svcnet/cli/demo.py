"""`svcnet demo`: the seed example, live, in one command.

Brings up the local lab for the example, runs the shipped site.yaml playbook against it, then
prints what shows kube-proxy's rules at work: the Service as kubectl shows it, the chain path
of the ClusterIP with the real chain names (traced by `svcnet explain`; in nftables mode with
the table's pieces behind each of the seed article's chains, see demo_walk.py), and which pod
answered each of 200 requests to the ClusterIP and 200 to the NodePort. The lab stays up.
"""

from __future__ import annotations

import io
import shlex
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import click

from svcnet import resources
from svcnet.cli.common import fail, load_or_exit
from svcnet.cli.demo_walk import walk_for, walk_text
from svcnet.explain.trace import TraceError
from svcnet.inspect.describe import describe_service
from svcnet.inspect.get import get
from svcnet.model.types import MODE_IPTABLES, MODE_NFTABLES, Cluster, ServicePort
from svcnet.render.artifacts import node_artifacts

EXIT_USAGE = 2  # as click's usage errors
EXAMPLES = {MODE_IPTABLES: "seed", MODE_NFTABLES: "seed-nftables"}  # the bundled example of each proxy mode
SITE = "site.yaml"  # the shipped playbook
INVENTORY_DIR = "inventory"  # where the lab's inventory is written, as `svcnet lab up` does
REQUESTS = 200  # per table column
REQUEST_TIMEOUT = 2  # seconds per request


def step(title: str, fn: Callable[[], Any]) -> Any:
    """Run one demo step with a progress line and its wall time."""
    click.secho(f"==> {title}", bold=True, err=True)
    t0 = time.perf_counter()
    result = fn()
    click.secho(f"    done in {time.perf_counter() - t0:.1f}s", dim=True, err=True)
    return result


def request_table(lab: Any, cluster: Cluster, sp: ServicePort) -> str:
    """Which pod answered each of REQUESTS requests to the ClusterIP (from node1) and the NodePort
    (from the lab's client machine), as a table of counts."""
    from svcnet.lab.node_ops import node_exec_argv

    def burst(machine: str, url: str) -> Counter[str]:
        curl = f"curl -s --max-time {REQUEST_TIMEOUT} {shlex.quote(url)} || echo '(no answer)'"
        loop = f"for i in $(seq {REQUESTS}); do {curl}; done"
        out = subprocess.run(node_exec_argv(lab, machine, ["sh", "-c", loop]), capture_output=True, text=True,
                             timeout=REQUESTS * REQUEST_TIMEOUT + 30).stdout
        return Counter(line.strip() for line in out.splitlines() if line.strip())

    first = cluster.nodes[0]
    wait_until_served(lab, first.name, f"http://{sp.cluster_ip}:{sp.port}/", len(sp.endpoints))
    via_cluster_ip = burst(first.name, f"http://{sp.cluster_ip}:{sp.port}/")
    via_node_port = burst("client", f"http://{first.internal_ip}:{sp.node_port}/") if sp.node_port else Counter()
    names = sorted(set(via_cluster_ip) | set(via_node_port))
    width = max([len(n) for n in names] + [len("answered by")])
    out = [f"{'answered by':<{width}}  {'ClusterIP ' + str(sp.cluster_ip) + ':' + str(sp.port):>26}"
           + (f"  {'NodePort ' + first.internal_ip + ':' + str(sp.node_port):>28}" if sp.node_port else "")]
    for name in names:
        row = f"{name:<{width}}  {_cell(via_cluster_ip[name], REQUESTS):>26}"
        if sp.node_port:
            row += f"  {_cell(via_node_port[name], REQUESTS):>28}"
        out.append(row)
    return "\n".join(out) + "\n"


def wait_until_served(lab: Any, machine: str, url: str, backends: int, seconds: float = 30) -> None:
    """Wait (bounded) until `backends` distinct pods answered `url`: pods start listening a moment
    after the apply that started them."""
    from svcnet.lab.node_ops import node_exec_argv

    probe = f"for i in $(seq 20); do curl -s --max-time 1 {shlex.quote(url)}; echo; done"
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        out = subprocess.run(node_exec_argv(lab, machine, ["sh", "-c", probe]), capture_output=True, text=True,
                             timeout=60).stdout
        if len({line for line in out.splitlines() if line.strip()}) >= backends:
            return
        time.sleep(0.5)


def _cell(count: int, total: int) -> str:
    return f"{count:3d}/{total} ({count / total:4.0%})"


@click.command()
@click.option("-f", "--filename", "paths", multiple=True, type=click.Path(exists=True),
              help="Description to demonstrate (default: the bundled example of --mode, a copy of "
                   "examples/seed or examples/seed-nftables).")
@click.option("--mode", type=click.Choice(tuple(EXAMPLES)), default=None,
              help="kube-proxy mode to demonstrate (default: iptables; with -f, the description's proxy.mode, "
                   "which --mode must match).")
@click.option("--name", default="seed", show_default=True, help="Lab name.")
def demo(paths: tuple[str, ...], mode: str | None, name: str) -> None:
    """The seed example, live: lab up, apply site.yaml, verify, then show the rules at work."""
    from svcnet.cli.tasks import registry
    from svcnet.lab import LabError, LabNode, lab_up, load_lab
    from svcnet.lab.spec import lab_routes
    from svcnet.playbook.load import load_playbook
    from svcnet.playbook.model import Play
    from svcnet.playbook.runner import Options, Runner
    from svcnet.transport.gateway import Connector
    from svcnet.transport.inventory import load_inventory

    paths = paths or (str(resources.example(EXAMPLES[mode or MODE_IPTABLES])),)
    cluster: Cluster = step(f"validate {' '.join(paths)}", lambda: load_or_exit(paths, show_warnings=True))
    if mode is not None and cluster.proxy.mode != mode:
        fail(f"--mode {mode}: the description sets proxy.mode: {cluster.proxy.mode} (drop --mode, or give a "
             f"description in {mode} mode)", EXIT_USAGE)

    def up() -> Any:
        try:
            return load_lab(name)
        except LabError:
            nodes = [LabNode(n.name, n.addresses) for n in cluster.nodes]
            return lab_up(nodes, name, INVENTORY_DIR, routes=lab_routes(cluster))

    try:
        lab = step(f"bring up the local lab {name!r} ({len(cluster.nodes)} nodes + a client, each its own "
                   "network namespace with sshd)", up)
    except LabError as exc:
        raise click.ClickException(str(exc)) from None

    plays = [Play(p.name, p.hosts, tuple(Path(x) for x in paths), p.tasks, p.serial, p.vars, p.tags, p.source)
             for p in load_playbook(resources.shipped_path(resources.PLAYBOOKS, SITE))]
    buf = io.StringIO()

    def site() -> int:
        inventory = load_inventory(lab.inventory_path)
        return Runner(inventory, Options(), registry(), Connector.from_env(inventory).gateway, out=buf).run(plays)

    code = step(f"svcnet playbook playbooks/site.yaml -i {lab.inventory_path}", site)
    click.echo(buf.getvalue(), nl=False)
    if code != 0:
        raise click.ClickException(f"the playbook failed (exit {code}); the lab is left up for inspection")

    ns = cluster.services[0].namespace if cluster.services else "default"
    click.echo(f"\n$ svcnet get services -n {ns}")
    click.echo(get(cluster, "services", ns, None), nl=False)
    for svc in cluster.services:
        click.echo(f"\n$ svcnet describe service {svc.name} -n {svc.namespace}")
        click.echo(describe_service(cluster, svc), nl=False)
    node = cluster.nodes[0].name
    for sp in cluster.service_ports:
        if not sp.cluster_ip or not sp.endpoints:
            continue
        try:
            click.echo(walk_text(cluster, node, sp, lab.client_ip), nl=False)
        except TraceError as exc:  # the tracer reads only the rule forms kube-proxy writes
            raise click.ClickException(f"{node}: cannot trace {sp.spn}: {exc}") from None
        table = step(f"send {REQUESTS} requests to the ClusterIP and {REQUESTS} to the NodePort",
                     partial(request_table, lab, cluster, sp))
        click.echo(table, nl=False)
    click.echo(f"""
The lab is up. Explore it:
  .venv/bin/svcnet lab status --name {name}
  .venv/bin/svcnet lab exec --name {name} {node} -- {walk_for(node_artifacts(cluster, node)).list_command}
  ssh -F {lab.ssh_config_path} {node}
  .venv/bin/svcnet explain -f {paths[0]} --node {node} --src 192.168.56.254 --dst {cluster.nodes[0].internal_ip}:30000
Tear it down:
  .venv/bin/svcnet lab down --name {name}""")
