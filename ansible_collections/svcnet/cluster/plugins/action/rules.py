# Copyright: svcnet contributors; Apache-2.0
"""svcnet.cluster.rules: Converge the node's kube-proxy iptables rules with svcnet's guarded apply."""

from __future__ import annotations

from ansible_collections.svcnet.cluster.plugins.plugin_utils.svcnet_action import SvcnetAction


class ActionModule(SvcnetAction):
    VERB = "rules"
