"""`svcnet demo`: the seed article, live, in one command."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import click

from svcnet.cli.common import load_or_exit
from svcnet.desired import node_artifacts_all
from svcnet.inspect.describe import describe_service
from svcnet.inspect.get import get
from svcnet.model.types import Cluster
from svcnet.render.chains import endpoint_chain_name, service_chain_names

SEED = Path(__file__).resolve().parents[2] / "examples" / "seed"


def step(title: str, fn: Callable[[], object]) -> object:
    """Run one demo step with a progress line and its wall time."""
    click.secho(f"==> {title}", bold=True, err=True)
    t0 = time.perf_counter()
    result = fn()
    click.secho(f"    done in {time.perf_counter() - t0:.1f}s", dim=True, err=True)
    return result


def chain_path(cluster: Cluster) -> str:
    """The seed article's walk-through with the real chain names of every service port."""
    lines = []
    for sp in cluster.service_ports:
        svc_chain, _, ext_chain, _ = service_chain_names(sp)
        n = len(sp.endpoints)
        lines.append(f"{sp.spn}  {sp.cluster_ip}:{sp.port}/{sp.protocol}")
        lines.append(f"  nat KUBE-SERVICES  -d {sp.cluster_ip} --dport {sp.port}  →  {svc_chain}")
        for ep in sp.endpoints:
            lines.append(f"    → {100 / n:.0f}%  {endpoint_chain_name(sp, ep)}  →  DNAT to {ep.hostport}")
        if sp.node_port:
            lines.append(f"  nat KUBE-NODEPORTS  --dport {sp.node_port}  →  {ext_chain} (mark for masquerade)"
                         f"  →  {svc_chain}")
    return "\n".join(lines) + "\n"


@click.command()
@click.option("-f", "--filename", "paths", multiple=True, type=click.Path(exists=True),
              help="Description to demonstrate (default: examples/seed).")
def demo(paths: tuple[str, ...]) -> None:
    """Validate, render and explain the seed example."""
    paths = paths or (str(SEED),)
    cluster = step(f"validate {' '.join(paths)}", lambda: load_or_exit(paths, show_warnings=True))
    assert isinstance(cluster, Cluster)
    arts = step("render every node's rules and address config", lambda: node_artifacts_all(cluster))
    ns = cluster.services[0].namespace if cluster.services else "default"
    click.echo(f"\n$ svcnet get services -n {ns}")
    click.echo(get(cluster, "services", ns, None), nl=False)
    for svc in cluster.services:
        click.echo(f"\n$ svcnet describe service {svc.name} -n {svc.namespace}")
        click.echo(describe_service(cluster, svc), nl=False)
    click.echo("\nThe path of a packet, as the seed article reads it from iptables-save:")
    click.echo(chain_path(cluster), nl=False)
    first = cluster.nodes[0].name
    click.echo(f"\n$ svcnet render --node {first}   (what svcnet applies with iptables-restore --noflush)")
    click.echo(arts[first].restore, nl=False)  # type: ignore[index]
