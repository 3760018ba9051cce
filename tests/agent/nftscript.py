"""Hand-made nftables-mode artifacts for the agent tests, from kube-proxy's own expectations.

Until svcnet renders nftables mode, a node's `rules.nft` is a shared vector
(../shared/reference/kube-proxy-nft-vectors/*.expected.nft, kube-proxy's whole table in its test
order) put into an order `nft -f` loads (table, chains, sets, maps, elements, rules: every reference
exists when used) and wrapped as the agent requires: `add table` and `delete table` first, so the
script replaces the table whole.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from svcnet.agent import node

# A copy of the one vector the lab tests load, so they run where ../shared is not checked out.
OVERALL = Path(__file__).with_name("data") / "overall.expected.nft"
LOAD_ORDER = {"table": 0, "chain": 1, "set": 2, "map": 3, "element": 4, "rule": 5}


def loadable(dump: str, family: str = "ip") -> str:
    """A kube-proxy table dump (sorted for comparison) as one self-contained `nft -f` script."""
    lines = [ln for ln in dump.splitlines() if ln.strip() and not ln.startswith("#")]
    lines.sort(key=lambda ln: LOAD_ORDER[ln.split()[1]])  # stable: rules keep their order per chain
    head = f"add table {family} {node.NFT_TABLE}\ndelete table {family} {node.NFT_TABLE}\n"
    return head + "\n".join(lines) + "\n"


def overall(replace: dict[str, str] | None = None) -> str:
    """The `overall` vector's table as a script (optionally with text replaced, e.g. a nodePort)."""
    text = OVERALL.read_text()
    for old, new in (replace or {}).items():
        text = text.replace(old, new)
    return loadable(text)


# A change of one service: svc2's nodePort 3001 becomes 3011.
NODEPORT_CHANGE = {"tcp . 3001 ": "tcp . 3011 "}


def nft_req(base: dict, script: str) -> dict:
    """An apply request (the wire of protocol.ApplyRequest) turned into nftables mode with `script`."""
    req = {**base, "proxy_mode": node.MODE_NFTABLES,
           "artifacts": {**base["artifacts"], node.RESTORE_FILE: "", node.JUMPS_FILE: "", node.NFT_FILE: script}}
    req["desired_hashes"] = {**base["desired_hashes"], node.PART_RULES: hashlib.sha256(script.encode()).hexdigest()}
    return req


def without_table(ruleset: str, family: str = "ip", name: str = node.NFT_TABLE) -> str:
    """`nft list ruleset` text without one top-level table block."""
    return re.sub(rf"(?ms)^table {family} {re.escape(name)} {{\n.*?^}}\n", "", ruleset)
