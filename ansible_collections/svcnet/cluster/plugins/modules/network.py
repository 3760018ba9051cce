# Copyright: svcnet contributors; Apache-2.0
# The work is done by the action plugin of the same name (plugins/action/network.py) on the controller.
from __future__ import annotations

DOCUMENTATION = r"""
module: network
short_description: svcnet's network task
description:
  - Converge the node's address config (pod bridge, pods, routes, sysctls) with svcnet's guarded apply.
extends_documentation_fragment: svcnet.cluster.svcnet
"""
