# Copyright: svcnet contributors; Apache-2.0
# The work is done by the action plugin of the same name (plugins/action/teardown.py) on the controller.
from __future__ import annotations

DOCUMENTATION = r"""
module: teardown
short_description: svcnet's teardown task
description:
  - Remove everything svcnet created on the node, guarded like an apply.
extends_documentation_fragment: svcnet.cluster.svcnet
"""
