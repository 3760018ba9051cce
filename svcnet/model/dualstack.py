"""A Service's IP families as kube-apiserver settles them: `ipFamilyPolicy`, `ipFamilies`, `clusterIPs`.

Two steps of the API server on a created Service, in its order, on what the description wrote:

1. `ValidateServiceClusterIPsRelatedFields` (kubernetes/kubernetes pkg/apis/core/validation/
   validation.go): clusterIP and clusterIPs[0] agree, 'None' only alone, at most one ClusterIP per
   family, each clusterIPs[i] of the family ipFamilies[i] names;
2. `Allocators.initIPFamilyFields` (pkg/registry/core/service/storage/alloc.go): the policy
   defaults to SingleStack (RequireDualStack for a headless Service without selector), SingleStack
   refuses two IPs or families, families are inferred from the given ClusterIPs, then checked
   against the cluster's (its serviceCIDRs'), and completed: the cluster's first family when none
   is named, the other family for Prefer/RequireDualStack on a dual-stack cluster.

The strategy's `normalizeClusterIPs` (pkg/registry/core/service/strategy.go) runs first: a
clusterIP alone stands for clusterIPs [clusterIP], clusterIPs alone sets clusterIP. The messages
are the API server's (`field.Invalid`: `Invalid value: VALUE: DETAIL`), at the same paths, and
the first step's errors stop it as they stop the API server.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from svcnet.diagnostics import PathT
from svcnet.model.family import IPV4, IPV6, family_of

SINGLE_STACK, PREFER_DUAL_STACK, REQUIRE_DUAL_STACK = "SingleStack", "PreferDualStack", "RequireDualStack"
FAMILY_NAMES = {IPV4: "IPv4", IPV6: "IPv6"}
FAMILIES_BY_NAME = {name: version for version, name in FAMILY_NAMES.items()}
NONE = "None"  # clusterIP None: a headless Service


@dataclass(frozen=True, slots=True)
class Problem:
    """One error as the API server words it, at the field it names."""

    path: PathT
    message: str


@dataclass(frozen=True, slots=True)
class Families:
    """What the API server settled: the policy, the families (primary first), per family the
    ClusterIP the description gave (None: allocate), and the errors that stopped it, if any."""

    policy: str
    families: tuple[int, ...]
    given: tuple[str | None, ...]
    headless: bool
    problems: tuple[Problem, ...] = ()


def other(version: int) -> int:
    return IPV6 if version == IPV4 else IPV4


def _go_value(value: object) -> str:
    """A value as `field.Invalid` quotes it: strings in double quotes, lists in brackets."""
    return json.dumps(value)


def invalid(path: PathT, value: object, detail: str) -> Problem:
    return Problem(path, f"Invalid value: {_go_value(value)}: {detail}")


def cluster_ips_of(spec: dict[str, Any]) -> tuple[list[str], list[Problem]]:
    """`normalizeClusterIPs`, then clusterIP against clusterIPs[0] (as written: the API compares strings)."""
    cip = spec.get("clusterIP") or ""
    cips = [str(ip) for ip in spec.get("clusterIPs") or ()]
    if cips == [""]:
        cips = []
    if not cip and cips:
        cip = cips[0]
    if cip and not cips:
        cips = [cip]
    if cips and cips[0] != cip:
        return cips, [invalid(("spec", "clusterIPs"), cips, "first value must match `clusterIP`")]
    return cips, []


def _validate(cips: list[str], names: list[str]) -> list[Problem]:
    """ValidateServiceClusterIPsRelatedFields' checks of the values (their syntax is the schema's)."""
    problems: list[Problem] = []
    for i, ip in enumerate(cips):
        if i == 0 and ip == NONE:
            if len(cips) > 1:
                problems.append(invalid(("spec", "clusterIPs"), cips, "'None' must be the first and only value"))
            continue
        if ip in ("", NONE):  # the schema let through only an IP, "" or "None"
            problems.append(invalid(("spec", "clusterIPs", i), ip,
                                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"))
    if problems:
        return problems  # a bad IP would skew the checks below, as in the API server
    if len(cips) > 1 and len({family_of(ip) for ip in cips}) < len(cips):
        problems.append(invalid(("spec", "clusterIPs"), cips, "may specify no more than one IP for each IP family"))
    if cips and cips != [NONE]:
        for i, (ip, name) in enumerate(zip(cips, names, strict=False)):
            if family_of(ip) != FAMILIES_BY_NAME[name]:
                problems.append(invalid(("spec", "clusterIPs", i), ip,
                                        f"expected an {name} value as indicated by `ipFamilies[{i}]`"))
    return problems


def _single_stack(spec: dict[str, Any], cluster_families: tuple[int, ...]) -> Families | None:
    """The common case, settled without the general steps (a description of 100,000 Services is
    mostly these): no policy but SingleStack, no ipFamilies or clusterIPs, a clusterIP of a
    configured family or none. None for anything else."""
    if spec.get("clusterIPs") or spec.get("ipFamilies") or spec.get("ipFamilyPolicy") not in (None, SINGLE_STACK):
        return None
    cip = spec.get("clusterIP") or ""
    if cip == NONE or not cluster_families:
        return None
    version = family_of(cip) if cip else cluster_families[0]
    if version not in cluster_families:
        return None
    return Families(SINGLE_STACK, (version,), (cip or None,), False)


def settle(spec: dict[str, Any], cluster_families: tuple[int, ...]) -> Families:
    """The Service's families as the API server settles them on create (see the module docstring)."""
    fast = _single_stack(spec, cluster_families)
    if fast is not None:
        return fast
    cips, problems = cluster_ips_of(spec)
    names = [str(n) for n in spec.get("ipFamilies") or ()]
    headless = (cips[0] if cips else "") == NONE
    selectorless = not spec.get("selector")
    problems += _validate(cips, names)
    given_policy = spec.get("ipFamilyPolicy")
    policy = str(given_policy or (REQUIRE_DUAL_STACK if headless and selectorless else SINGLE_STACK))

    def done(families: list[int], found: list[Problem]) -> Families:
        given = tuple(next((ip for ip in cips if ip != NONE and family_of(ip) == f), None) for f in families)
        return Families(policy, tuple(families), given, headless, tuple(found))

    families = [FAMILIES_BY_NAME[n] for n in names]
    if problems:
        return done(families, problems)
    if policy == SINGLE_STACK:
        if len(cips) == 2:
            problems.append(invalid(("spec", "ipFamilyPolicy"), policy, "must be 'RequireDualStack' or "
                                    "'PreferDualStack' when multiple cluster IPs are specified"))
        if len(names) == 2:
            problems.append(invalid(("spec", "ipFamilyPolicy"), policy, "must be 'RequireDualStack' or "
                                    "'PreferDualStack' when multiple IP families are specified"))
    for i, ip in enumerate(cips):
        if ip == NONE:
            break
        fam = family_of(ip)
        if i >= len(families):
            if fam in cluster_families:
                families.append(fam)
            else:
                problems.append(invalid(("spec", "clusterIPs", i), cips,
                                        f"{FAMILY_NAMES[fam]} is not configured on this cluster"))
    if problems:
        return done(families, problems)
    default = cluster_families[0] if cluster_families else IPV4
    if headless and selectorless:
        # Allowed on any cluster: a headless Service without selector gets no ClusterIP to allocate.
        families = families or [default]
        if len(families) < 2 and policy != SINGLE_STACK:
            families.append(other(families[0]))
        return done(families, [])
    if policy == REQUIRE_DUAL_STACK and len(cluster_families) < 2:
        problems.append(invalid(("spec", "ipFamilyPolicy"), policy, "this cluster is not configured for "
                                "dual-stack services"))
    for i, fam in enumerate(families):
        if fam not in cluster_families:
            problems.append(invalid(("spec", "ipFamilies", i), FAMILY_NAMES[fam], "not configured on this cluster"))
    if problems:
        return done(families, problems)
    families = families or [default]
    if policy != SINGLE_STACK and len(families) == 1 and len(cluster_families) == 2:
        families.append(other(families[0]))
    return done(families, [])
