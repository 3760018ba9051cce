"""Where a Service's traffic goes: the pods its selector picks, and the EndpointSlices given for it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from svcnet.diagnostics import WARNING, Diagnostic
from svcnet.load import Document
from svcnet.model.build import SERVICE_NAME_LABEL, Build, resolve_target_port, selects
from svcnet.model.semantic.addresses import special_diag
from svcnet.model.types import Pod, Service


class Selection:
    """What a Service's selector picks among the pods of its namespace."""

    def __init__(self, pods: tuple[Pod, ...]) -> None:
        self.by_namespace: dict[str, list[Pod]] = defaultdict(list)
        for pod in pods:
            self.by_namespace[pod.namespace].append(pod)

    def check(self, svc: Service, doc: Document) -> Iterator[Diagnostic]:
        """A selector that picks nothing leaves the Service without endpoints (a warning: the
        pods may come later); a named targetPort that no picked pod names has none either."""
        if not svc.selector:
            return
        selector = svc.selector
        selected = [p for p in self.by_namespace[svc.namespace] if selects(selector, p)]
        if not selected:
            message = f"selector matches no pod: traffic to {svc.namespace}/{svc.name} will be REJECTed"
            yield doc.diag(("spec", "selector"), message, WARNING)
        for i, port in enumerate(svc.ports):
            named = isinstance(port.target_port, str) and not port.target_port.isdigit()
            if named and selected and all(resolve_target_port(port, p) is None for p in selected):
                yield doc.diag(("spec", "ports", i, "targetPort"),
                               f"targetPort {port.target_port!r} ({port.protocol}) is not a container port "
                               "name of any selected pod")


def _slice_addresses(doc: Document) -> Iterator[Diagnostic]:
    """Endpoint addresses Kubernetes forbids, quoted as written (kube-proxy ignores FQDN slices;
    the schema holds each address to its slice's addressType)."""
    if doc.obj.get("addressType") == "FQDN":
        return
    for i, ep in enumerate(doc.obj.get("endpoints") or ()):
        for j, addr in enumerate(ep.get("addresses") or ()):
            yield from special_diag(doc, ("endpoints", i, "addresses", j), "endpoint address", addr)


def check_slices(b: Build) -> list[Diagnostic]:
    """EndpointSlices: unique names, allowed addresses, and a Service to belong to (a warning:
    kube-proxy keeps the endpoints of a Service that does not exist, and uses none of them)."""
    out: list[Diagnostic] = []
    services = {s.key for s in b.cluster.services}
    seen: set[tuple[str, str]] = set()
    for doc in b.slice_docs:
        meta = doc.obj.get("metadata") or {}
        ns = meta.get("namespace", "default")
        key = (ns, meta.get("name", ""))
        if key in seen:
            out.append(doc.diag(("metadata", "name"), f"duplicate EndpointSlice {ns}/{key[1]}"))
        seen.add(key)
        out.extend(_slice_addresses(doc))
        svc = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if svc and (ns, svc) not in services:
            out.append(doc.diag(("metadata", "labels", SERVICE_NAME_LABEL),
                                f"no Service {ns}/{svc}: these endpoints are unused", WARNING))
    return out
