# Copyright: svcnet contributors; Apache-2.0
"""svcnet.cluster.validate:

Validate the svcnet cluster description on the controller (nothing reaches the node).
"""

from __future__ import annotations

from ansible_collections.svcnet.cluster.plugins.plugin_utils.svcnet_action import SvcnetAction


class ActionModule(SvcnetAction):
    VERB = "validate"
