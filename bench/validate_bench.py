"""Validation time of a Cluster with many nodes (the podCIDR and node-address checks), and of
the schema check of many documents with each JSON Schema backend.

    .venv/bin/python bench/validate_bench.py [--nodes 1000,6000] [--repeat 3] [--schema-services 10000]

Needs no root and touches nothing but a temporary file. Per size it prints the median of
`--repeat` runs of the whole front of the pipeline (load + schema + build + semantic checks,
`svcnet validate`'s work) and of the node checks alone (`svcnet.model.semantic.cluster.check_nodes`).
Then the schema check of `--schema-services` Services and as many EndpointSlices (0: skip) with
jsonschema-rs (svcnet's default) and python-jsonschema (its fallback).
"""

from __future__ import annotations

import argparse
import ipaddress
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import yaml
from generate import cluster_yaml, services_yaml

from svcnet.model.load import check_paths
from svcnet.model.semantic.cluster import check_nodes
from svcnet.validate_schema import Schemas

CLUSTER_CIDR = "10.128.0.0/9"  # room for 32768 /24 podCIDRs, beside the serviceCIDR 10.96.0.0/12
FIRST_NODE_IP = ipaddress.ip_address("172.16.0.1")


def nodes(n: int) -> list[tuple[str, str, str]]:
    """n nodes: (name, address, podCIDR), podCIDRs /24 in order from the start of CLUSTER_CIDR."""
    base = ipaddress.ip_network(CLUSTER_CIDR).network_address
    return [(f"node{i:05d}", str(FIRST_NODE_IP + i), f"{base + (i << 8)}/24") for i in range(n)]


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def schema_backends(n_services: int, repeat: int) -> None:
    """Seconds per backend to check n Services and n EndpointSlices against their schemas."""
    docs = list(yaml.safe_load_all(services_yaml(n_services, 1, lambda k: (f"10.244.{k // 250 % 250}.{k % 250 + 2}",
                                                                             "node00000"))))
    print(f"\n{'documents':>10} {'backend':>18} {'seconds':>8}")
    for schemas in (Schemas.load(), Schemas.load(use_rust=False)):
        keys = [schemas.kind_key(d["apiVersion"], d["kind"]) or "" for d in docs]

        def check(schemas: Schemas = schemas, keys: list[str] = keys) -> None:
            bad = [i for i, (key, d) in enumerate(zip(keys, docs, strict=True)) if schemas.validate(key, d)]
            assert not bad, f"{schemas.backend}: document {bad[0]} does not validate"

        print(f"{len(docs):>10} {schemas.backend:>18} {median_seconds(check, repeat):>8.3f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", default="1000,6000", help="comma-separated cluster sizes")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--schema-services", type=int, default=10_000, help="services for the schema timing (0: skip)")
    args = ap.parse_args()
    print(f"{'nodes':>7} {'validate s':>11} {'check_nodes s':>14}")
    with tempfile.TemporaryDirectory(prefix="svcnet-validate-bench-") as tmp:
        for n in (int(s) for s in args.nodes.split(",")):
            path = Path(tmp) / f"cluster-{n}.yaml"
            path.write_text(cluster_yaml("bench", CLUSTER_CIDR, nodes(n)))
            checked = check_paths([path])
            if not checked.ok or checked.build is None:
                print("\n".join(str(d) for d in checked.diagnostics[:5]), file=sys.stderr)
                return 2
            whole = median_seconds(partial(check_paths, [path]), args.repeat)
            only = median_seconds(partial(check_nodes, checked.build), args.repeat)
            print(f"{n:>7} {whole:>11.3f} {only:>14.3f}")
    if args.schema_services:
        schema_backends(args.schema_services, args.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
