# Copyright: svcnet contributors; Apache-2.0
"""svcnet.cluster.preflight:

Check that the node can run svcnet (commands, kernel features, no foreign link/route/netns in the way).
"""

from __future__ import annotations

from ansible_collections.svcnet.cluster.plugins.plugin_utils.svcnet_action import SvcnetAction


class ActionModule(SvcnetAction):
    VERB = "preflight"
