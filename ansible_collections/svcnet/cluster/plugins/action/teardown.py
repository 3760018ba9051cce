# Copyright: svcnet contributors; Apache-2.0
"""svcnet.cluster.teardown: Remove everything svcnet created on the node, guarded like an apply."""

from __future__ import annotations

from ansible_collections.svcnet.cluster.plugins.plugin_utils.svcnet_action import SvcnetAction


class ActionModule(SvcnetAction):
    VERB = "teardown"
