# Copyright: svcnet contributors; Apache-2.0
# The work is done by the action plugin of the same name (plugins/action/verify.py) on the controller.
from __future__ import annotations

DOCUMENTATION = r"""
module: verify
short_description: svcnet's verify task
description:
  - Run svcnet's checks (rules, address config, pods, real traffic) against the node.
extends_documentation_fragment: svcnet.cluster.svcnet
options:
  outside:
    description: Where outside traffic (NodePorts, externalIPs, LB IPs) comes from, as C(svcnet verify --outside).
    type: str
    choices: [auto, local, none]
    default: auto
"""
