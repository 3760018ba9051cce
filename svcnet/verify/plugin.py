"""pytest plugin: svcnet's fixtures and parametrization for testinfra checks of a cluster.

Does nothing unless `--svcnet-cluster` and `--svcnet-inventory` are given (or `svcnet verify`
hands it a loaded context). Then tests may use:

* `svcnet_cluster` (the parsed Cluster), `svcnet_inventory`, `svcnet_context`;
* `svcnet_hosts` ({node: testinfra Host}) and `svcnet_host` (one test per node);
* `service_url(name, namespace, port_name=None, via="cluster"|"nodeport", node=None, family=None)`
  (family 4 or 6: that family's ClusterIP or node address, IPv6 in brackets; None: the primary);
* parameters `svcnet_node`, `svcnet_target_node`, `svcnet_source`, `svcnet_pod`,
  `svcnet_external` and `svcnet_service_port` (the last two narrowed by
  `@pytest.mark.svcnet_ports(SELECTOR)`, a name from targets.EXTERNAL_SELECTORS or SELECTORS).

    pytest --svcnet-cluster=examples/seed --svcnet-inventory=inventory/lab.yaml my_tests/

(Use the `--opt=PATH` form: pytest picks its rootdir before plugin options are known, and would
take a separate PATH argument for a test path.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from svcnet.transport.gateway import Connector, Gateway, Gateways
from svcnet.transport.inventory import Inventory
from svcnet.verify.context import OUTSIDE_AUTO, OUTSIDE_MODES, VerifyContext
from svcnet.verify.via_ansible import CONNECTION_ANSIBLE, CONNECTION_SVCNET, CONNECTIONS, AnsibleInventoryError

CONTEXT_KEY = pytest.StashKey[VerifyContext]()
GATEWAYS_KEY = pytest.StashKey[Gateways]()  # the gateways this plugin opened itself
EMPTY_KEY = pytest.StashKey[set[str]]()  # tests whose svcnet parameters matched nothing
NOT_CONFIGURED = "svcnet fixtures need --svcnet-cluster PATH and --svcnet-inventory PATH"
PORTS_MARKER = "svcnet_ports"
VIA_CLUSTER, VIA_NODEPORT = "cluster", "nodeport"


@dataclass(frozen=True, eq=False)
class Preloaded:
    """Registered by `svcnet verify` (pytest.main plugins=[...]) to hand over a loaded context."""

    context: VerifyContext


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("svcnet", "svcnet verify (checks a cluster description against its nodes)")
    group.addoption("--svcnet-cluster", action="append", default=[], metavar="PATH",
                    help="Cluster description file or directory (repeatable).")
    group.addoption("--svcnet-inventory", metavar="PATH", help="Ansible-style inventory of the nodes.")
    group.addoption("--svcnet-node", action="append", default=[], metavar="NAME",
                    help="Only check this node (repeatable; default: every node).")
    group.addoption("--svcnet-outside", choices=OUTSIDE_MODES, default=OUTSIDE_AUTO,
                    help="Where outside traffic comes from: auto (the lab's client, else skipped), "
                         "local (this machine), none.")
    group.addoption("--svcnet-connection", choices=CONNECTIONS, default=CONNECTION_SVCNET,
                    help="How nodes are reached: svcnet's own SSH, or testinfra's ansible:// backend "
                         "(ansible-inventory reads the inventory; needs ansible-core on PATH).")
    group.addoption("--svcnet-connect-timeout", type=float, default=10.0, metavar="SECONDS",
                    help="SSH connect timeout.")


def load_context(paths: list[str], inventory_path: str, nodes: list[str], outside: str,
                 gateways: Callable[[Inventory, Callable[[str], Gateway] | None], Gateways],
                 connection: str = CONNECTION_SVCNET) -> VerifyContext:
    """Load and validate description and inventory; pytest.UsageError with located messages.

    `gateways(inventory, connect)`: makes the run's gateways to the inventory's nodes (closed by its
    caller), with `connect` when the connection gives one (None: svcnet's own SSH).
    """
    from svcnet.diagnostics import errors
    from svcnet.model.load import check_paths
    from svcnet.transport.inventory import InventoryError, load_inventory

    checked = check_paths(paths)
    if not checked.ok:
        lines = [str(d) for d in errors(checked.diagnostics)]
        raise pytest.UsageError("invalid cluster description:\n" + "\n".join(lines))
    assert checked.build is not None
    connect: Callable[[str], Gateway] | None = None
    try:
        if connection == CONNECTION_ANSIBLE:
            from svcnet.verify.via_ansible import AnsibleHosts

            hosts = AnsibleHosts(inventory_path)
            inventory, connect = hosts.inventory(), hosts.gateway
        else:
            inventory = load_inventory(inventory_path)
    except InventoryError as exc:
        raise pytest.UsageError(f"invalid inventory {inventory_path}:\n" + "\n".join(exc.messages)) from None
    except AnsibleInventoryError as exc:
        raise pytest.UsageError(str(exc)) from None
    try:
        return VerifyContext(checked.build.cluster, inventory, gateways(inventory, connect).get, nodes, outside)
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{PORTS_MARKER}(selector): service ports a svcnet check runs for")
    for plugin in config.pluginmanager.get_plugins():
        if isinstance(plugin, Preloaded):
            config.stash[CONTEXT_KEY] = plugin.context
            return
    paths, inventory = config.getoption("svcnet_cluster"), config.getoption("svcnet_inventory")
    if not paths and not inventory:
        return
    if not paths or not inventory:
        raise pytest.UsageError("--svcnet-cluster and --svcnet-inventory must be given together")
    timeout = config.getoption("svcnet_connect_timeout")

    def gateways(inv: Inventory, connect: Callable[[str], Gateway] | None) -> Gateways:
        connect = connect or Connector.from_env(inv, connect_timeout=timeout).gateway
        config.stash[GATEWAYS_KEY] = Gateways(connect)
        return config.stash[GATEWAYS_KEY]

    config.stash[CONTEXT_KEY] = load_context(paths, inventory, config.getoption("svcnet_node"),
                                             config.getoption("svcnet_outside"), gateways,
                                             config.getoption("svcnet_connection"))


def pytest_unconfigure(config: pytest.Config) -> None:
    ctx = config.stash.get(CONTEXT_KEY, None)
    if ctx is not None:
        ctx.close()
    opened = config.stash.get(GATEWAYS_KEY, None)  # only ours: a preloaded context's are its caller's
    if opened is not None:
        opened.close()


def _params(ctx: VerifyContext, name: str, selector: str) -> tuple[list[Any], list[str]]:
    from svcnet.verify import targets

    cluster = ctx.cluster
    if name in ("svcnet_node", "svcnet_target_node"):
        return list(ctx.nodes), list(ctx.nodes)
    if name == "svcnet_source":
        srcs = targets.sources(cluster, ctx.nodes)
        return srcs, [s.label for s in srcs]
    if name == "svcnet_pod":
        pods = [p for p in cluster.pods if p.node_name in ctx.nodes and p.ip]
        return pods, [f"{p.node_name}-{p.namespace}/{p.name}" for p in pods]
    if name == "svcnet_external":
        addrs = [a for a in targets.external_addresses(cluster, selector) if external_owner(ctx, a.ip) in ctx.nodes]
        return addrs, [a.label for a in addrs]
    ports = targets.select_ports(cluster, selector)
    return ports, [targets.port_id(sp) for sp in ports]


def external_owner(ctx: VerifyContext, ip: str) -> str:
    """The node an external address is checked with: the node holding it, the node the lab's client
    routes it to, else the first node."""
    for node in ctx.cluster.nodes:
        if ip in node.addresses:
            return node.name
    return dict(ctx.outside.routes).get(ip) or ctx.cluster.nodes[0].name


PARAM_ORDER = ("svcnet_source", "svcnet_node", "svcnet_target_node", "svcnet_pod", "svcnet_external",
               "svcnet_service_port")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    ctx = metafunc.config.stash.get(CONTEXT_KEY, None)
    if ctx is None:
        return
    marker = metafunc.definition.get_closest_marker(PORTS_MARKER)
    selector = str(marker.args[0]) if marker and marker.args else "all"
    taken = {n for m in metafunc.definition.iter_markers("parametrize") for n in _argnames(m.args[0])}
    for name in PARAM_ORDER:
        if name in metafunc.fixturenames and name not in taken:
            values, ids = _params(ctx, name, selector)
            if not values:
                metafunc.config.stash.setdefault(EMPTY_KEY, set()).add(metafunc.definition.nodeid)
            metafunc.parametrize(name, values, ids=ids)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect checks with nothing to check (e.g. affinity checks in a cluster without affinity)."""
    empty = config.stash.get(EMPTY_KEY, set())
    if not empty:
        return
    gone = [item for item in items if item.nodeid.split("[", 1)[0] in empty]
    if gone:
        config.hook.pytest_deselected(items=gone)
        items[:] = [item for item in items if item not in gone]


def _argnames(spec: Any) -> list[str]:
    if isinstance(spec, str):
        return [s.strip() for s in spec.split(",")]
    return list(spec)


# -- fixtures ------------------------------------------------------------------------------
def _context(config: pytest.Config) -> VerifyContext:
    ctx = config.stash.get(CONTEXT_KEY, None)
    if ctx is None:
        pytest.fail(NOT_CONFIGURED, pytrace=False)
    return ctx


@pytest.fixture(scope="session")
def svcnet_context(pytestconfig: pytest.Config) -> VerifyContext:
    """The run's VerifyContext (cluster, inventory, node sessions)."""
    return _context(pytestconfig)


@pytest.fixture(scope="session")
def svcnet_cluster(svcnet_context: VerifyContext) -> Any:
    """The parsed, validated Cluster of --svcnet-cluster."""
    return svcnet_context.cluster


@pytest.fixture(scope="session")
def svcnet_inventory(svcnet_context: VerifyContext) -> Any:
    return svcnet_context.inventory


@pytest.fixture(scope="session")
def svcnet_hosts(svcnet_context: VerifyContext) -> dict[str, Any]:
    """{node name: testinfra Host} for every checked node (opens each node's session)."""
    return {node: svcnet_context.host(node) for node in svcnet_context.nodes}


@pytest.fixture
def svcnet_node(pytestconfig: pytest.Config) -> str:
    """Parametrized per node by the plugin; this body only runs when the plugin is not configured."""
    pytest.fail(NOT_CONFIGURED, pytrace=False)


@pytest.fixture
def svcnet_host(svcnet_context: VerifyContext, svcnet_node: str) -> Any:
    """A testinfra Host for each node in turn (tests using it run once per node)."""
    return svcnet_context.host(svcnet_node)


@pytest.fixture(scope="session")
def service_url(svcnet_context: VerifyContext) -> Callable[..., str]:
    """`service_url(name, namespace, port_name=None, via="cluster"|"nodeport", node=None, family=None)` -> URL."""
    return lambda *a, **kw: make_service_url(svcnet_context.cluster, *a, **kw)


def make_service_url(cluster: Any, name: str, namespace: str = "default", port_name: str | None = None,
                     via: str = VIA_CLUSTER, node: str | None = None, family: int | None = None) -> str:
    """`http://CLUSTER-IP:PORT` or `http://NODE-IP:NODEPORT` of a service port (`[IPv6]` in brackets),
    of IP family `family` (4 or 6; None: the Service's primary ClusterIP, the node's first address)."""
    from svcnet.verify.targets import node_address
    ports = [sp for sp in cluster.service_ports if sp.namespace == namespace and sp.name == name]
    if not ports:
        known = ", ".join(sorted({f"{sp.namespace}/{sp.name}" for sp in cluster.service_ports}))
        raise LookupError(f"no service {namespace}/{name} (services: {known or 'none'})")
    if port_name is not None:
        ports = [sp for sp in ports if sp.port_name == port_name]
        if not ports:
            raise LookupError(f"service {namespace}/{name} has no port named {port_name!r}")
    elif len(ports) > 1:
        raise LookupError(f"service {namespace}/{name} has several ports "
                          f"({', '.join(sp.port_name for sp in ports)}); pass port_name")
    sp = ports[0]
    if via == VIA_CLUSTER:
        ip = sp.cluster_ip if family is None else sp.cluster_ip_of(family)
        if not ip or ip == "None":
            raise LookupError(f"{sp.spn} has no {f'IPv{family} ' if family else ''}cluster IP")
        return f"http://{_host(ip)}:{sp.port}"
    if via == VIA_NODEPORT:
        if not sp.node_port:
            raise LookupError(f"{sp.spn} has no nodePort")
        names = [n.name for n in cluster.nodes]
        if node is not None and node not in names:
            raise LookupError(f"no node {node!r} (nodes: {', '.join(names)})")
        target = cluster.node(node) if node else cluster.nodes[0]
        address = target.internal_ip if family is None else node_address(target, family)
        if address is None:
            raise LookupError(f"node {target.name} has no IPv{family} address")
        return f"http://{_host(address)}:{sp.node_port}"
    raise ValueError(f"via must be {VIA_CLUSTER!r} or {VIA_NODEPORT!r}, not {via!r}")


def _host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip
