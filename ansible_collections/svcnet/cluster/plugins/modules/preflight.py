# Copyright: svcnet contributors; Apache-2.0
# The work is done by the action plugin of the same name (plugins/action/preflight.py) on the controller.
from __future__ import annotations

DOCUMENTATION = r"""
module: preflight
short_description: svcnet's preflight task
description:
  - Check that the node can run svcnet (commands, kernel features, no foreign link/route/netns in the way).
extends_documentation_fragment: svcnet.cluster.svcnet
"""
