"""`svcnet playbook` / `apply` refuse bad command-line input before any play runs (no lab needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from svcnet.cli.main import cli

SEED = Path(__file__).resolve().parents[2] / "examples" / "seed"


@pytest.mark.parametrize(("limit", "fragment"), [("@nope.txt", "cannot read host list"),
                                                 ("~(", "invalid regular expression")])
def test_a_bad_limit_is_an_input_error(tmp_path: Path, limit: str, fragment: str) -> None:
    # Found by tests/fuzz: the pattern error surfaced from the first play as a traceback.
    (tmp_path / "hosts.ini").write_text("[web]\nnode1\n")
    result = CliRunner().invoke(cli, ["apply", "-f", str(SEED), "-i", str(tmp_path / "hosts.ini"), "--limit", limit])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert f"svcnet: invalid --limit: {fragment}" in result.output.splitlines()[-1]
    assert "PLAY" not in result.output  # nothing ran
