"""The registry of the playbook's verbs: which handler does each task on a host (one per run)."""

from __future__ import annotations

from svcnet.apply.converge import Converge, validate
from svcnet.playbook.model import NETWORK, PREFLIGHT, RULES, TEARDOWN, VALIDATE, VERBS, VERIFY
from svcnet.playbook.runner import Handler
from svcnet.verify.task import verify


def registry() -> dict[str, Handler]:
    """A handler for every verb, sharing one run's state (the apply's per-host probes and renders)."""
    converge = Converge()
    handlers: dict[str, Handler] = {
        VALIDATE: validate,
        PREFLIGHT: converge.preflight,
        NETWORK: converge.network,
        RULES: converge.rules,
        VERIFY: verify,
        TEARDOWN: converge.teardown,
    }
    assert set(handlers) == set(VERBS)
    return handlers
