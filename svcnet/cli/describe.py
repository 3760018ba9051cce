"""`svcnet validate`, `render`, `get` and `describe`: everything that needs no machine."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from svcnet.cli.common import diagnostic_json, fail, files_option, load_or_exit, print_diagnostics
from svcnet.diagnostics import ERROR, errors, warnings
from svcnet.inspect.describe import describe_service
from svcnet.inspect.get import RESOURCES, get
from svcnet.model.load import check_paths
from svcnet.render.artifacts import JUMPS_FILE, NETCONF_FILE, node_artifacts_all, restore_text, write_artifacts
from svcnet.render.dump import canonical_sort
from svcnet.render.nftables import canonical_sort as nft_canonical_sort


@click.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("-q", "--quiet", is_flag=True, help="Print errors only, not warnings.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: one JSON object per diagnostic and line on stdout (file, line, column, path, "
                   "severity, message); the summary goes to stderr.")
def validate(paths: tuple[str, ...], quiet: bool, output: str) -> None:
    """Validate a description: schemas, then semantic checks. Exit 0 valid, 1 invalid."""
    checked = check_paths(paths)
    if output == "json":
        for d in checked.diagnostics:
            if not quiet or d.severity == ERROR:
                click.echo(diagnostic_json(d))
    else:
        print_diagnostics(checked.diagnostics, show_warnings=not quiet)
    errs, warns = errors(checked.diagnostics), warnings(checked.diagnostics)
    if not checked.ok:
        click.echo(f"invalid: {len(errs)} error(s), {len(warns)} warning(s)", err=True)
        sys.exit(1)
    c = checked.build.cluster  # type: ignore[union-attr]
    click.echo(
        f"valid: {len(c.nodes)} node(s), {len(c.services)} service(s), {len(c.pods)} pod(s), "
        f"{len(warns)} warning(s)", err=output == "json",
    )


@click.command()
@files_option
@click.option("--node", "node", metavar="NAME",
              help="Print this node's rules: iptables-restore input, or in nftables mode the nft -f script.")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path),
              help="Write every node's artifacts under DIR/<node>/.")
@click.option("--canonical", is_flag=True, help="Print in kube-proxy's canonical test order.")
@click.option("--jumps", is_flag=True, help="Print the node's jump rules instead of the restore input.")
@click.option("--netconf", is_flag=True, help="Print the node's address-config script instead.")
@click.option("--family", type=click.Choice(["4", "6"]),
              help="Print the restore input of this IP family only (4: iptables, 6: ip6tables); "
                   "default: every family the node has, each under a '# IPv4'/'# IPv6' header when there are two.")
def render(paths: tuple[str, ...], node: str | None, out: Path | None, canonical: bool, jumps: bool,
           netconf: bool, family: str | None) -> None:
    """Render what svcnet will apply: per node, the rules (restore input per family and jump rules,
    or the nft script), and the address config."""
    if bool(node) == bool(out):
        fail("give exactly one of --node NAME or --out DIR", 2)
    if family and (out or jumps or netconf):
        fail("--family selects the restore input --node prints; not with --out, --jumps or --netconf", 2)
    if out and (canonical or jumps or netconf):
        # --out writes the files apply ships, byte for byte; a reordered or partial copy would not be them.
        fail("--canonical, --jumps and --netconf choose what --node prints; --out writes every file as applied", 2)
    cluster = load_or_exit(paths)
    if out:
        try:
            written = write_artifacts(node_artifacts_all(cluster), out)
        except OSError as exc:  # e.g. a file where a node's directory goes: say which path, no traceback
            fail(f"cannot write {exc.filename or out}: {exc.strerror or exc}", 1)
        click.echo(f"wrote {len(written)} file(s) for {len(cluster.nodes)} node(s) under {out}", err=True)
        return
    names = [n.name for n in cluster.nodes]
    if node not in names:
        fail(f"no node {node!r} in the description (nodes: {', '.join(names)})", 1)
    art = node_artifacts_all(cluster, [node])[node]  # type: ignore[list-item,index]
    files = art.files()
    if family and art.nftables_mode:
        fail(f"node {node} is in nftables mode: --family selects an iptables-mode restore input", 2)
    if jumps and art.nftables_mode:
        fail(f"node {node} is in nftables mode, which has no jump rules (its rules are one table: --node)", 2)
    if jumps:
        text = files[JUMPS_FILE]
    elif netconf:
        text = files[NETCONF_FILE]
    elif art.nftables_mode:
        # --canonical: the table alone (not the script's replace preamble), in kube-proxy's test order.
        text = nft_canonical_sort(art.nft_table) + "\n" if canonical else art.nft
    else:
        version = int(family) if family else None
        found = restore_text(art, version, canonical_sort if canonical else lambda t: t)
        if found is None:
            fail(f"node {node} has no IPv{family} rules (the description has no IPv{family} serviceCIDR)", 1)
        text = found or ""
    click.echo(text, nl=False)


@click.command(name="get")
@click.argument("resource", type=click.Choice(sorted(RESOURCES)), metavar="services|pods|endpoints|nodes")
@files_option
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("-A", "--all-namespaces", is_flag=True)
@click.option("-o", "--output", type=click.Choice(["wide", "yaml", "json"]))
def get_cmd(resource: str, paths: tuple[str, ...], namespace: str, all_namespaces: bool, output: str | None) -> None:
    """Display objects of the description, as kubectl get (allocated values filled in)."""
    cluster = load_or_exit(paths)
    click.echo(get(cluster, resource, None if all_namespaces else namespace, output), nl=False)


@click.command()
@click.argument("kind", type=click.Choice(["service", "services", "svc"]), metavar="service")
@click.argument("name")
@files_option
@click.option("-n", "--namespace", default="default", show_default=True)
def describe(kind: str, name: str, paths: tuple[str, ...], namespace: str) -> None:
    """Show a service in detail, as kubectl describe service, Endpoints included."""
    cluster = load_or_exit(paths)
    for svc in cluster.services:
        if svc.key == (namespace, name):
            click.echo(describe_service(cluster, svc), nl=False)
            return
    fail(f'services "{name}" not found in namespace {namespace}', 1)
