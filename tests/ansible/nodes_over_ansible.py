"""Plain testinfra tests, run by test_testinfra_ansible.py with testinfra's own ansible:// backend
(`pytest --hosts=ansible://all --ansible-inventory=INV`) from the ansible-core venv: not svcnet's."""

from __future__ import annotations

from typing import Any


def test_reached_as_the_inventory_names_it(host: Any) -> None:
    assert host.backend.NAME == "ansible"
    assert host.run("hostname").stdout.strip() == host.backend.host  # a lab node's own UTS hostname


def test_svcnet_rules_are_there(host: Any) -> None:
    assert any("KUBE-SVC-" in rule for rule in host.iptables.rules("nat", "KUBE-SERVICES"))
    assert host.file("/etc/svcnet/rules.restore").is_file
