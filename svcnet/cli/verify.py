"""`svcnet verify`: run the generated testinfra suite against every node and report per check."""

from __future__ import annotations

import sys

import click

from svcnet.cli.common import files_option, print_diagnostics
from svcnet.verify.context import OUTSIDE_AUTO, OUTSIDE_MODES
from svcnet.verify.via_ansible import CONNECTION_ANSIBLE, CONNECTION_SVCNET, CONNECTIONS

EXIT_USAGE = 4  # pytest's ExitCode.USAGE_ERROR


@click.command()
@files_option
@click.option("-i", "--inventory", required=True, metavar="PATH", help="Ansible-style inventory of the nodes.")
@click.option("--junitxml", metavar="FILE", help="Also write a JUnit XML report (pytest --junitxml).")
@click.option("-k", "keyword", metavar="EXPR", help="Only checks matching this pytest -k expression.")
@click.option("-n", "--node", "nodes", multiple=True, metavar="NAME", help="Only check this node (repeatable).")
@click.option("--outside", type=click.Choice(OUTSIDE_MODES), default=OUTSIDE_AUTO, show_default=True,
              help="Where outside traffic (NodePorts, externalIPs, LB IPs) comes from: auto = the lab's "
                   "client namespace if the inventory is a lab's, else skipped; local = this machine.")
@click.option("-T", "--timeout", "connect_timeout", type=click.FloatRange(1, 300), default=10.0,
              show_default=True, help="SSH connect timeout in seconds.")
@click.option("-c", "--connection", type=click.Choice(CONNECTIONS), default=CONNECTION_SVCNET, show_default=True,
              help="How nodes are reached: svcnet = svcnet's own SSH (as apply); ansible = testinfra's ansible:// "
                   "backend (ansible-inventory reads the inventory: plugins, vault; needs ansible-core on PATH).")
@click.option("-q", "--quiet", is_flag=True, help="One character per check instead of one line.")
def verify(paths: tuple[str, ...], inventory: str, junitxml: str | None, keyword: str | None,
           nodes: tuple[str, ...], outside: str, connect_timeout: float, connection: str, quiet: bool) -> None:
    """Check every node against the description: rules, address config, pods and real traffic.

    Runs a pytest-testinfra suite generated from the description; each check is reported per node
    and object. Exit codes are pytest's: 0 all passed, 1 a check failed, 2 interrupted,
    3 internal error, 4 usage error (invalid description, inventory or options), 5 no check selected.
    """
    from svcnet.diagnostics import errors
    from svcnet.model.load import check_paths
    from svcnet.transport.gateway import Connector, Gateways
    from svcnet.transport.inventory import InventoryError, load_inventory
    from svcnet.verify.context import VerifyContext
    from svcnet.verify.suite import pytest_args, run_suite

    checked = check_paths(paths)
    if not checked.ok or checked.build is None:
        print_diagnostics(checked.diagnostics)
        click.echo(f"svcnet: the description is invalid ({len(errors(checked.diagnostics))} error(s))", err=True)
        sys.exit(EXIT_USAGE)
    if connection == CONNECTION_ANSIBLE:
        from svcnet.verify.via_ansible import AnsibleHosts, AnsibleInventoryError

        try:
            hosts = AnsibleHosts(inventory)
        except AnsibleInventoryError as exc:
            click.echo(f"svcnet: {exc}", err=True)
            sys.exit(EXIT_USAGE)
        inv, gateways = hosts.inventory(), Gateways(hosts.gateway)
    else:
        try:
            inv = load_inventory(inventory)
        except InventoryError as exc:
            for message in exc.messages:
                click.echo(message, err=True)
            click.echo(f"svcnet: invalid inventory {inventory}", err=True)
            sys.exit(EXIT_USAGE)
        gateways = Gateways(Connector.from_env(inv, connect_timeout=connect_timeout).gateway)
    try:
        ctx = VerifyContext(checked.build.cluster, inv, gateways.get, list(nodes), outside)
    except ValueError as exc:
        click.echo(f"svcnet: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    try:
        code = run_suite(ctx, pytest_args(junitxml, keyword, verbose=not quiet))
    finally:
        gateways.close()
    sys.exit(code)
