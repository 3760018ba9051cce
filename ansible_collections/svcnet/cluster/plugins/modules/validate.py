# Copyright: svcnet contributors; Apache-2.0
# The work is done by the action plugin of the same name (plugins/action/validate.py) on the controller.
from __future__ import annotations

DOCUMENTATION = r"""
module: validate
short_description: svcnet's validate task
description:
  - Validate the svcnet cluster description on the controller (nothing reaches the node).
extends_documentation_fragment: svcnet.cluster.svcnet
"""
