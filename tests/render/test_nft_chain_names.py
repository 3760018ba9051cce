"""nftables chain names (render/chains.py) against kube-proxy's cases (kube-proxy-nft-vectors/chain-names.yaml):
`Test_servicePortChainNameBase`, `Test_servicePortEndpointChainNameBase` and every hashed name in the dumps."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from nftrealpath import NFT_VECTOR_DIR

from svcnet.model.types import Endpoint, ServicePort
from svcnet.render import chains as c

CASES: dict[str, Any] = yaml.safe_load((NFT_VECTOR_DIR / "chain-names.yaml").read_text())


def _split_endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


@pytest.mark.parametrize("case", CASES["service_port_chain_name_base"], ids=lambda k: k["case"])
def test_service_port_chain_name_base(case: dict[str, Any]) -> None:
    args = (case["namespace"], case["service"], case["protocol"], case["port_name"])
    assert c.nft_port_input(*args) == case["hash_input"]
    assert c.nft_service_base(*args) == case["expected"]


@pytest.mark.parametrize("case", CASES["service_port_endpoint_chain_name_base"], ids=lambda k: k["case"])
def test_service_port_endpoint_chain_name_base(case: dict[str, Any]) -> None:
    port_input = c.nft_port_input(case["namespace"], case["service"], case["protocol"], case["port_name"])
    ip, port = _split_endpoint(case["endpoint"])
    assert c.nft_endpoint_base(port_input, ip, port) == case["expected"]
    assert len(case["expected"]) <= c.NFT_NAME_MAX


@pytest.mark.parametrize("case", CASES["seen_in_vector_dumps"], ids=lambda k: k["hash_input"])
def test_hashed_names_of_the_dumps(case: dict[str, str]) -> None:
    assert c.nft_name_base(case["hash_input"]) == case["expected"]


def test_all_28_cases_are_checked() -> None:
    assert sum(len(CASES[k]) for k in ("service_port_chain_name_base", "service_port_endpoint_chain_name_base",
                                        "seen_in_vector_dumps")) == 28


def test_port_chains_of_a_model_service_port_share_one_base() -> None:
    sp = ServicePort("ns1", "svc1", "p80", "TCP", 80, "172.30.0.41", endpoints=(Endpoint("10.180.0.1", 80),))
    assert c.nft_port_chains(sp) == tuple(p + "ULMVA6XW-ns1/svc1/tcp/p80" for p in (
        c.NFT_SERVICE_PREFIX, c.NFT_LOCAL_PREFIX, c.NFT_EXTERNAL_PREFIX, c.NFT_FIREWALL_PREFIX))
    assert all(c.is_nft_service_chain(ch) for ch in c.nft_port_chains(sp))
    assert not any(c.is_nft_service_chain(name) for name, *_ in c.NFT_BASE_CHAINS)
