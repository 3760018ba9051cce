# Copyright: svcnet contributors; Apache-2.0
"""svcnet.cluster.verify: Run svcnet's checks (rules, address config, pods, real traffic) against the node."""

from __future__ import annotations

from typing import Any, ClassVar

from ansible_collections.svcnet.cluster.plugins.plugin_utils.svcnet_action import COMMON_SPEC, VERIFY_SPEC, SvcnetAction


class ActionModule(SvcnetAction):
    VERB = "verify"
    SPEC: ClassVar[dict[str, Any]] = {**COMMON_SPEC, **VERIFY_SPEC}
