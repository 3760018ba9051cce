"""The iptables-nft cliff: what a full `iptables-restore` of svcnet's rules is expected to cost a node.

iptables on the nf_tables backend (Debian's default) loads a large restore input far slower than
it grows: every rule is translated to nftables and the whole ruleset revalidated. The constants
below are a power-law fit, t = scale * lines ** power, of `iptables-restore --noflush` loading
svcnet's rendered rules into an empty scratch namespace, per backend, measured by
bench/restore_cliff_bench.py (see bench/README.md for the run). Above a backend's threshold the
rules task warns, before the node's restore starts, with the expected cost and what to use instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from svcnet.agent.node import CMD_TIMEOUT
from svcnet.diagnostics import WARNING, Diagnostic, format_path
from svcnet.load import DOC_MARKER, Document
from svcnet.model.types import MODE_NFTABLES, Cluster, Source

# The backend names the agent's facts use (`iptables --version`: "(nf_tables)", else legacy).
BACKEND_NFT, BACKEND_LEGACY = "nf_tables", "legacy"
WARN_SECONDS = 10.0  # an expected restore at least this long is worth a warning (and a change of mode)
PROGRESS_LINES = 10_000  # rule lines from which a node's restore is shown starting and ending


@dataclass(frozen=True)
class LoadFit:
    """t = scale * lines ** power seconds for one backend to load `lines` restore lines."""

    scale: float
    power: float

    def seconds(self, lines: int) -> float:
        return self.scale * max(lines, 1) ** self.power

    def lines_for(self, seconds: float) -> int:
        """The lines whose expected load takes `seconds` (the inverse of `seconds`)."""
        return math.ceil((seconds / self.scale) ** (1.0 / self.power))


FITS = {  # bench/restore_cliff_bench.py, 2026-11-29, 5.6k-75k lines on a loaded 2-core VM (bench/README.md)
    BACKEND_NFT: LoadFit(8.64e-9, 2.15),  # 25k lines: 20 s, 50k: 147 s, 75k: > 300 s
    BACKEND_LEGACY: LoadFit(3.62e-5, 1.04),  # about linear: 75k lines in 3.3 s
}
THRESHOLDS = {backend: fit.lines_for(WARN_SECONDS) for backend, fit in FITS.items()}


def rule_lines(texts: tuple[str | None, ...]) -> int:
    """The lines of the restore inputs a node is sent (both families')."""
    return sum(t.count("\n") for t in texts if t)


def expected_seconds(backend: str, lines: int) -> float | None:
    """The expected time of a full restore of `lines` on `backend` (None: a backend not measured)."""
    fit = FITS.get(backend)
    return fit.seconds(lines) if fit else None


def cliff_warning(backend: str, lines: int, proxy_mode: str) -> str | None:
    """Why this node's full restore will be slow and what to do instead, or None below the backend's threshold.

    nftables mode writes no iptables rules: never a warning there.
    """
    fit = FITS.get(backend)
    if proxy_mode == MODE_NFTABLES or fit is None or lines < THRESHOLDS[backend]:
        return None
    cost = fit.seconds(lines)
    advice = "set `proxy.mode: nftables` in the Cluster"
    if backend == BACKEND_NFT:
        legacy = FITS[BACKEND_LEGACY].seconds(lines)
        advice += f", or switch the node's iptables to iptables-legacy (about {legacy:.0f} s)"
    # The agent stops each command (the restore's --test run among them) after CMD_TIMEOUT: the apply fails then.
    limit = f", beyond the agent's {CMD_TIMEOUT:.0f} s limit per command: the apply may fail" \
        if cost > CMD_TIMEOUT else ""
    return (f"{lines} iptables rule lines on the {backend} backend: a full restore is expected to take "
            f"about {cost:.0f} s{limit} (threshold {THRESHOLDS[backend]} lines); {advice}")


def located(cluster: Cluster, node_name: str, message: str) -> Diagnostic:
    """The warning located at the node's entry in the Cluster document."""
    index, node = next((i, n) for i, n in enumerate(cluster.nodes) if n.name == node_name)
    path = ("spec", "nodes", index)
    line, col = entry_position(node.source, path) if node.source else (1, 1)
    file = node.source.file if node.source else "(cluster)"
    return Diagnostic(file, line, col, format_path(path), f"node {node_name}: {message}", WARNING)


def entry_position(source: Source, path: tuple[str | int, ...]) -> tuple[int, int]:
    """(line, col) of `path` in the document at `source`, read again (the model keeps only where
    documents start); the document's start if its file cannot be read now."""
    try:
        lines = Path(source.file).read_text().splitlines(keepends=True)[source.line - 1:]
    except (OSError, UnicodeDecodeError):
        return source.line, 1
    end = next((i for i, ln in enumerate(lines) if i and DOC_MARKER.match(ln)), len(lines))
    return Document(source.file, source.doc, source.line, "".join(lines[:end]), None).locate(path)
