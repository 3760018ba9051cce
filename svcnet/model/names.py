"""Names svcnet derives for pods: Deployment pod names, pod network namespaces and veths.

Whatever validates must apply, so every derived name fits the node agent's limits (the agent's
`NAME_RE` and `IFNAME_RE` in svcnet/agent/node.py are the truth; tests/model/test_names.py holds
these constants to them) and no two pods ever get the same name: each name is probed
deterministically, in a fixed order, until it is free. A name depends only on its own object
unless its first choice is taken, so adding a pod does not rename the others.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from functools import partial

from svcnet.model import alloc

NETNS_PREFIX = "svcnet_"
VETH_PREFIX = "veth"
# The agent's NAME_RE (a netns name) allows 63 characters and IFNAME_RE (an interface) 15,
# the kernel's IFNAMSIZ - 1.
NETNS_MAX = 63
IFNAME_MAX = 15
NETNS_HASH_LEN = 10  # hex digits of a shortened netns name (40 bits)
VETH_HASH_LEN = 8  # hex digits of a veth name (unchanged since svcnet's first release)
# Marks a shortened netns name. A readable name never holds two `_` in a row (namespaces and
# pod names are DNS-1123, without `_`), so a shortened name never equals a readable one.
_SHORTENED = "__"

# Kubernetes' SimpleNameGenerator (apiserver/pkg/storage/names/generate.go): a generateName
# base is cut to 63 - 5 characters, then 5 random characters are appended.
GENERATED_SUFFIX_LEN = 5
GENERATED_BASE_MAX = 63 - GENERATED_SUFFIX_LEN


def _hex(text: str, length: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _attempt_key(key: str, attempt: int) -> str:
    """The hash input of a probe: the object's own key first, then the key with a counter."""
    return key if attempt == 0 else f"{key}#{attempt}"


def first_free(candidate: Callable[[int], str], taken: set[str]) -> str:
    """`candidate(0)`, or the first `candidate(n)` not in `taken`; added to `taken`."""
    attempt = 0
    name = candidate(attempt)
    while name in taken:
        attempt += 1
        name = candidate(attempt)
    taken.add(name)
    return name


def replica_pod_name(namespace: str, deployment: str, template_hash: str, index: int, attempt: int) -> str:
    """Name of a Deployment's pod, as its ReplicaSet `<deployment>-<template hash>` would generate
    it: the base cut to Kubernetes' limit, then 5 characters (derived, not random)."""
    base = f"{deployment}-{template_hash}-"[:GENERATED_BASE_MAX]
    key = _attempt_key(f"{namespace}/{deployment}/{index}", attempt)
    return base + alloc.k8s_suffix(key, GENERATED_SUFFIX_LEN)


def netns_name(namespace: str, pod: str, attempt: int = 0) -> str:
    """`svcnet_<namespace>_<pod>` when it fits the agent's limit; else a prefix of it, `__` and
    a hash of the pod's key (a later `attempt` hashes the key with a counter)."""
    readable = f"{NETNS_PREFIX}{namespace}_{pod}"
    if attempt == 0 and len(readable) <= NETNS_MAX:
        return readable
    digest = _hex(_attempt_key(f"{namespace}/{pod}", attempt), NETNS_HASH_LEN)
    keep = NETNS_MAX - len(_SHORTENED) - NETNS_HASH_LEN
    return readable[:keep] + _SHORTENED + digest


def veth_name(namespace: str, pod: str, attempt: int = 0) -> str:
    """Host side of a pod's veth: `veth` and a hash of the pod's key (12 characters)."""
    return VETH_PREFIX + _hex(_attempt_key(f"{namespace}/{pod}", attempt), VETH_HASH_LEN)


def pod_interfaces(
    pods: Iterable[tuple[str, str]], reserved: Iterable[str] = ()
) -> dict[tuple[str, str], tuple[str, str]]:
    """(namespace, pod) -> (netns, veth), unique across all pods, probed in sorted pod order.

    `reserved` names (e.g. the bridge) are never given to a veth.
    """
    netns_taken: set[str] = set()
    veth_taken: set[str] = set(reserved)
    out = {}
    for ns, name in sorted(set(pods)):
        out[(ns, name)] = (first_free(partial(netns_name, ns, name), netns_taken),
                           first_free(partial(veth_name, ns, name), veth_taken))
    return out
