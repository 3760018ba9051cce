# Copyright: svcnet contributors; Apache-2.0
"""svcnet.cluster.verify: Run svcnet's checks (rules, address config, pods, real traffic) against the node."""

from __future__ import annotations

from ansible_collections.svcnet.cluster.plugins.plugin_utils.svcnet_action import SvcnetAction


class ActionModule(SvcnetAction):
    VERB = "verify"
