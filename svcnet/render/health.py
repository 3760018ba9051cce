"""Render a node's health checks (svcnet.desired.HealthConf) into the file its health server reads.

The node agent's health server (svcnet/agent/node.py, `health-serve`) reads it from /etc/svcnet:
kube-proxy's healthz server on `healthz`, and one health check per LoadBalancer service with
externalTrafficPolicy Local on its healthCheckNodePort. The keys are the agent's (HEALTH_KEYS there;
tests/render/test_health.py checks they agree).
"""

from __future__ import annotations

import json

from svcnet.desired import HealthConf


def health_document(conf: HealthConf) -> dict:
    return {
        "healthz": conf.healthz,
        "listen": list(conf.listen_ips),
        "services": [{"namespace": s.namespace, "name": s.name, "port": s.port, "localEndpoints": s.local_endpoints}
                     for s in conf.services],
    }


def render_health(conf: HealthConf) -> str:
    """The health server's configuration as stable JSON text (one hash per content)."""
    return json.dumps(health_document(conf), indent=1, sort_keys=True) + "\n"
