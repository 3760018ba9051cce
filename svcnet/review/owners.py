"""Which service port a line of a rendered restore input belongs to.

A line belongs to a service port when it is about one of the port's own chains (KUBE-SVC, SVL,
EXT, FW, and its endpoints' KUBE-SEP, hashed from the port's name as kube-proxy hashes them), or
when it sits in a fixed chain (KUBE-SERVICES, KUBE-NODEPORTS, …) with the port's name
`ns/name:port` first in its comment, as kube-proxy writes those. Everything else (KUBE-FORWARD,
KUBE-POSTROUTING, the fixed chains' declarations, …) belongs to the node: `NODE_WIDE`.

Chain names come from the model, not from comments: in large-cluster mode kube-proxy leaves the
comments off the endpoint rules. Hashing every endpoint of 10,000 services takes a while, so the
ports that changed are hashed first and the rest only if a line needs them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from svcnet.model.types import ServicePort
from svcnet.render.chains import is_service_chain, nft_port_names, port_chains

NODE_WIDE = "(node-wide rules)"
UNKNOWN_SERVICE = "(unknown service chain)"
_COMMENT = "--comment "


def _chains(ports: Iterable[ServicePort], into: dict[str, str]) -> None:
    for sp in ports:
        into.update(dict.fromkeys(port_chains(sp), sp.spn))


class LineOwners:
    """Line -> service port name (or `NODE_WIDE`), remembered per line: nodes share most lines.

    `first`: the ports whose chains are hashed at once (those that changed); `rest`: every port of
    both sides, hashed on the first line whose chain is not among the first ports'.
    """

    def __init__(self, first: Iterable[ServicePort], rest: Sequence[ServicePort]):
        self._chains: dict[str, str] = {}
        _chains(first, self._chains)
        self._first_spns = frozenset(self._chains.values())
        self._rest: Sequence[ServicePort] | None = rest
        self._spns = frozenset(sp.spn for sp in rest) | self._first_spns
        self._memo: dict[str, str] = {}

    def __call__(self, line: str) -> str:
        found = self._memo.get(line)
        if found is None:
            found = self._memo[line] = self._owner(line)
        return found

    def belongs(self, line: str, owner: str) -> bool:
        """Whether `line` is `owner`'s; cheaper than `self(line) == owner` for a changed port's lines,
        whose chains are all known without hashing every other port's."""
        found = self._memo.get(line)
        if found is not None:
            return found == owner
        if self._rest is not None and owner in self._first_spns:
            chain = _chain_of(line)
            if chain and is_service_chain(chain) and chain not in self._chains:
                return False  # another port's chain: every chain of `owner` is known
        return self(line) == owner

    def _chain_owner(self, chain: str) -> str | None:
        found = self._chains.get(chain)
        if found is None and self._rest is not None:
            _chains(self._rest, self._chains)
            self._rest = None
            found = self._chains.get(chain)
        return found

    def _owner(self, line: str) -> str:
        chain = _chain_of(line)
        if not chain:
            return NODE_WIDE
        if is_service_chain(chain):
            return self._chain_owner(chain) or self._comment_spn(line) or UNKNOWN_SERVICE
        return self._comment_spn(line) or NODE_WIDE

    def _comment_spn(self, line: str) -> str | None:
        i = line.find(_COMMENT)
        if i < 0:
            return None
        word = line[i + len(_COMMENT):].lstrip('"').partition(" ")[0].rstrip('"')
        return word if word in self._spns else None


def _chain_of(line: str) -> str:
    """The chain a `:CHAIN …`, `-A CHAIN …` or `-X CHAIN` line is about; '' for other lines."""
    if line.startswith(":"):
        return line[1:].partition(" ")[0]
    if line.startswith(("-A ", "-X ")):
        return line[3:].partition(" ")[0]
    return ""


class NftOwners:
    """A line of an nft script (`add rule ip kube-proxy CHAIN …`, `add element … { … : goto CHAIN }`)
    -> the service port whose chain, set or element comment it names, else `NODE_WIDE`.
    Every port's names are hashed on the first line asked about."""

    def __init__(self, ports: Sequence[ServicePort]):
        self._ports: Sequence[ServicePort] | None = ports
        self._names: dict[str, str] = {}
        self._memo: dict[str, str] = {}

    def __call__(self, line: str) -> str:
        found = self._memo.get(line)
        if found is None:
            found = self._memo[line] = self._owner(line)
        return found

    def _owner(self, line: str) -> str:
        if self._ports is not None:
            self._names = {name: sp.spn for sp in self._ports for name in nft_port_names(sp)}
            self._ports = None
        for word in line.split()[3:]:
            spn = self._names.get(word.strip('",;{}'))
            if spn is not None:
                return spn
        return NODE_WIDE
