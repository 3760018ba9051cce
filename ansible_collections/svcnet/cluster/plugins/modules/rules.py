# Copyright: svcnet contributors; Apache-2.0
# The work is done by the action plugin of the same name (plugins/action/rules.py) on the controller.
from __future__ import annotations

DOCUMENTATION = r"""
module: rules
short_description: svcnet's rules task
description:
  - Converge the node's kube-proxy rules (iptables or nftables mode) with svcnet's guarded apply.
extends_documentation_fragment: svcnet.cluster.svcnet
"""
