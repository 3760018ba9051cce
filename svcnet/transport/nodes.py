"""Reach the nodes of an inventory: resolve a host and open a verified SSH session."""

from __future__ import annotations

import os

from svcnet.transport.hostconfig import HostConfig, become_password
from svcnet.transport.inventory import Inventory
from svcnet.transport.ssh import Session


def host_config(inventory: Inventory, node: str) -> HostConfig:
    """The node's connection settings; the become password comes from the environment."""
    if node not in inventory.hosts:
        raise KeyError(f"host {node!r} is not in the inventory (hosts: {', '.join(inventory.hosts)})")
    return inventory.host_config(node, become_password(os.environ))


def open_node(inventory: Inventory, node: str, accept_new_host_keys: bool = False, timeout: float = 10.0) -> Session:
    """An open SSH session to `node` as the inventory describes it (host key verified)."""
    return Session(host_config(inventory, node), accept_new_host_keys, timeout).open()
