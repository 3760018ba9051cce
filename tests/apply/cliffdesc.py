"""Descriptions for the iptables-nft cliff's tests: N services x 5 endpoints over node1 and node2."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from svcnet.model.types import MODE_IPTABLES, MODE_NFTABLES

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from generate import cluster_yaml, services_yaml

SERVICES_ABOVE_NFT = 800  # about 18,800 rule lines per node: above nf_tables' threshold, below legacy's
# The warning as `svcnet apply` prints it: file:line:col: path: warning: node: lines, backend
WARNING = re.compile(r"^\[WARNING\]: (\S+):(\d+):\d+: spec\.nodes\[(\d)\]: warning: node (node\d): (\d+) iptables "
                     r"rule lines on the (\S+) backend", re.M)


def cliff_description(tmp_path: Path, services: int, mode: str = MODE_IPTABLES) -> Path:
    """`services` x 5 endpoints over node1 and node2 (bench/generate.py)."""
    nodes = [("node1", "192.168.56.11", "10.128.0.0/16"), ("node2", "192.168.56.12", "10.129.0.0/16")]

    def place(k: int) -> tuple[str, str]:
        i, host = k % 2, k // 2 + 2
        return f"10.{128 + i}.{host // 256}.{host % 256}", nodes[i][0]

    text = cluster_yaml("cliff", "10.128.0.0/9", nodes) + services_yaml(services, 5, place)
    if mode == MODE_NFTABLES:
        text = text.replace("spec:\n", "spec:\n  proxy: {mode: nftables}\n", 1)
    path = tmp_path / f"cliff-{services}-{mode}.yaml"
    path.write_text(text)
    return path
