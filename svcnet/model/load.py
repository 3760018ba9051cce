"""The front of the pipeline: load → schema-validate → build the model → semantic checks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from svcnet.diagnostics import WARNING, DescriptionError, Diagnostic, errors, format_path
from svcnet.load import Document, load_paths
from svcnet.model import semantic
from svcnet.model.build import Build, Objects, build
from svcnet.model.semantic.ipv6 import ipv6_errors
from svcnet.model.semantic.spelling import spelling_warnings
from svcnet.model.types import Cluster
from svcnet.validate_schema import Schemas

# Schema keys of the kinds svcnet reads, and where each goes in `Objects`.
_BUCKETS = {
    "cluster": "cluster",
    "service": "services",
    "pod": "pods",
    "deployment": "deployments",
    "endpointslice": "slices",
}
# Kubernetes kinds svcnet does not act on: skipped with a warning, not an error.
_IGNORED_KINDS = frozenset(
    {"Namespace", "ConfigMap", "Secret", "ServiceAccount", "Ingress", "NetworkPolicy", "Endpoints",
     "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "PersistentVolumeClaim", "HorizontalPodAutoscaler"}
)
# svcnet's own kind rejects unknown fields in its schema; Kubernetes kinds only warn.
_WARN_UNKNOWN = ("service", "pod", "deployment", "endpointslice")


@dataclass
class Checked:
    """Result of checking a description: the build (if it got that far) and all diagnostics."""

    build: Build | None
    diagnostics: list[Diagnostic]

    @property
    def ok(self) -> bool:
        return self.build is not None and not errors(self.diagnostics)


def _kind_of(doc: Document, schemas: Schemas) -> tuple[str | None, Diagnostic | None]:
    obj = doc.obj
    if not isinstance(obj, dict):
        return None, doc.diag((), f"a document must be a mapping (an object), not {type(obj).__name__}")
    api, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api, str) or not api:
        return None, doc.diag(("apiVersion",), "apiVersion is required")
    if not isinstance(kind, str) or not kind:
        return None, doc.diag(("kind",), "kind is required")
    key = schemas.kind_key(api, kind)
    if key is None and kind in _IGNORED_KINDS:
        return None, doc.diag(("kind",), f"{kind} is not used by svcnet and is ignored", WARNING)
    if key not in _BUCKETS:
        known = "svcnet.dev/v1alpha1 Cluster, v1 Service, v1 Pod, apps/v1 Deployment, discovery.k8s.io/v1 EndpointSlice"
        return None, doc.diag(("kind",), f"unknown kind {api} {kind} (svcnet reads {known})")
    return key, None


def classify(docs: Sequence[Document], schemas: Schemas) -> tuple[Objects, list[Diagnostic], bool]:
    """Schema-validate every document and sort the valid ones by kind.

    Also says whether any Cluster document was seen, valid or not.
    """
    objs = Objects()
    cluster_seen = False
    diags: list[Diagnostic] = []
    seen: dict[tuple[str, str, str], Document] = {}
    for doc in docs:
        key, err = _kind_of(doc, schemas)
        if err:
            diags.append(err)
            continue
        assert key is not None
        cluster_seen = cluster_seen or key == "cluster"
        problems = schemas.validate(key, doc.obj)
        diags.extend(doc.diag(p.path, p.message) for p in problems)
        if problems:
            continue
        if key in _WARN_UNKNOWN:
            for path, name in schemas.unknown_fields(key, doc.obj):
                diags.append(
                    Diagnostic(
                        doc.file, *doc.locate(path), format_path(path),
                        f"field {name!r} is not used by svcnet and is ignored", WARNING,
                    )
                )
        meta = doc.obj.get("metadata") or {}
        ident = (key, str(meta.get("namespace", "default")), str(meta.get("name", "")))
        if key != "cluster" and ident in seen:
            first = seen[ident]
            diags.append(
                doc.diag(
                    ("metadata", "name"),
                    f"duplicate {doc.obj['kind']} {ident[1]}/{ident[2]} (first at {first.file}:{first.line})",  # type: ignore[index]
                )
            )
            continue
        seen[ident] = doc
        getattr(objs, _BUCKETS[key]).append(doc)
    return objs, diags, cluster_seen


def _cluster_doc_checks(objs: Objects, docs: Sequence[Document], cluster_seen: bool) -> list[Diagnostic]:
    if not objs.cluster and cluster_seen:
        return []  # the invalid Cluster document was already reported
    if not objs.cluster:
        where = docs[0] if docs else None
        file = where.file if where else "(description)"
        return [Diagnostic(file, 1, 1, "(description)", "no valid svcnet.dev/v1alpha1 Cluster document found")]
    out = [
        doc.diag(("kind",), f"a description holds exactly one Cluster; first at {objs.cluster[0].file}:"
                 f"{objs.cluster[0].line}")
        for doc in objs.cluster[1:]
    ]
    return out


def check_paths(paths: Sequence[str | Path], schemas: Schemas | None = None, *, ipv6: bool = False) -> Checked:
    """Run the whole front of the pipeline and collect every diagnostic.

    `ipv6=True` lifts the IPv6-first gate (`svcnet.model.semantic.ipv6`): the model, the checks and
    the renderer handle IPv6-first and IPv6-only clusters, applying them is not proven yet. Only
    tests pass it; the CLI never does (dual-stack clusters with IPv4 first pass without it).
    """
    schemas = schemas or Schemas.load()
    loaded = load_paths(paths)
    diags = list(loaded.diagnostics)
    objs, found, cluster_seen = classify(loaded.documents, schemas)
    diags.extend(found)
    if not ipv6:
        diags.extend(ipv6_errors(objs))
    diags.extend(spelling_warnings(objs))
    cluster_diags = _cluster_doc_checks(objs, loaded.documents, cluster_seen)
    diags.extend(cluster_diags)
    if not objs.cluster or errors(cluster_diags):
        return Checked(None, diags)
    b = build(objs)
    diags.extend(semantic.check(b))
    return Checked(b, diags)


def load_cluster(paths: Sequence[str | Path], *, ipv6: bool = False) -> Cluster:
    """The validated model, or `DescriptionError` carrying every diagnostic (`ipv6`: as `check_paths`)."""
    checked = check_paths(paths, ipv6=ipv6)
    if not checked.ok:
        raise DescriptionError(checked.diagnostics)
    assert checked.build is not None
    return checked.build.cluster
