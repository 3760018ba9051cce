"""Every hand-made bad description gets a located error and exit 1 from `svcnet validate`.

Each file under bad/ states what it expects in a header comment:
`# expect: LINE:PATH[: message fragment]`, or one `# exact: LINE:COL: PATH: message` per error
(the file's errors are then exactly those). Files marked `# alone` hold their own Cluster; the
others are validated together with good/base-cluster.yaml.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from svcnet.cli.main import cli

HERE = Path(__file__).parent
BAD = sorted((HERE / "bad").glob("*.yaml"))
BASE = HERE / "good" / "base-cluster.yaml"
# Files that cannot carry a header comment.
SPECIAL: dict[str, tuple[int, str, str | None]] = {
    "30-binary.yaml": (1, "(file)", "binary"),
    "18-empty.yaml": (1, "(file)", "holds no YAML document"),
}
_EXPECT = re.compile(r"^# expect: (\d+):([^:\n]+)(?:: (.*))?$", re.MULTILINE)
_EXACT = re.compile(r"^# exact: (.+)$", re.MULTILINE)


def expectation(path: Path) -> tuple[int, str, str | None]:
    if path.name in SPECIAL:
        return SPECIAL[path.name]
    m = _EXPECT.search(path.read_text())
    assert m, f"{path.name} has no '# expect:' or '# exact:' header"
    return int(m.group(1)), m.group(2), m.group(3)


def test_there_are_at_least_30_bad_files():
    assert len(BAD) >= 30


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.name)
def test_bad_file_gets_located_error(path: Path):
    text = "" if path.name in SPECIAL else path.read_text()
    args = ["validate", str(path)] if "# alone" in text else ["validate", str(BASE), str(path)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.splitlines() if ln.startswith(f"{path}:")]
    # every reported line has the located shape FILE:LINE:COL: PATH: message
    for ln in lines:
        assert re.match(rf"^{re.escape(str(path))}:\d+:\d+: \S.*: .+", ln), ln
    exact = _EXACT.findall(text)
    if exact:
        errors = [ln for ln in lines if ": warning: " not in ln]
        assert sorted(errors) == sorted(f"{path}:{e}" for e in exact), result.output
        return
    line, field, fragment = expectation(path)
    wanted = f"{path}:{line}:"
    matching = [ln for ln in lines if ln.startswith(wanted) and f": {field}: " in ln]
    assert matching, f"expected {wanted}*: {field}: ... in:\n{result.output}"
    if fragment:
        assert any(fragment in ln for ln in matching), f"{fragment!r} not in {matching}"


def test_good_seed_example_is_valid():
    seed = HERE.parents[1] / "examples" / "seed"
    result = CliRunner().invoke(cli, ["validate", str(seed)])
    assert result.exit_code == 0, result.output
    assert "valid: 2 node(s), 1 service(s), 2 pod(s)" in result.output


def test_usage_error_exits_2():
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 2


def test_all_errors_reported_at_once(tmp_path: Path):
    f = tmp_path / "many.yaml"
    f.write_text(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\nspec:\n  ports:\n    - port: 70000\n"
        "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: b\nspec:\n  clusterIP: 1.2.3\n"
        "  ports:\n    - port: 80\n"
    )
    result = CliRunner().invoke(cli, ["validate", str(BASE), str(f)])
    assert result.exit_code == 1
    assert f"{f}:7:" in result.output and f"{f}:14:" in result.output
