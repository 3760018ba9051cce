"""The README's `# yaml-language-server: $schema=…` line works: the schema it names, resolved from the
manifest as editors resolve it, accepts the manifest (its references included), and svcnet reads the
file with the line as before."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from svcnet.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"


def test_the_documented_modeline_names_a_schema_that_accepts_the_manifest(tmp_path: Path) -> None:
    section = ROOT.joinpath("README.md").read_text().split("## svcnet in CI", 1)[1].split("\n## ", 1)[0]
    (line,) = re.findall(r"^# yaml-language-server: \$schema=\S+$", section, re.MULTILINE)
    schema = line.split("$schema=", 1)[1]
    # the layout the README describes: the schemas copied into the repository, manifests beside them
    shutil.copytree(ROOT / "schemas", tmp_path / "schemas")
    deploy = tmp_path / "deploy"
    shutil.copytree(ROOT / "examples" / "seed", deploy)
    service = deploy / "service.yaml"
    service.write_text(f"{line}\n{service.read_text()}")

    resolved = (service.parent / schema).resolve()
    assert resolved.is_file(), resolved
    done = subprocess.run([str(CHECK_JSONSCHEMA), "--schemafile", str(resolved), str(service)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text(service.read_text().replace("port: 8080", "port: 70000"))
    refused = subprocess.run([str(CHECK_JSONSCHEMA), "--schemafile", str(resolved), str(broken)],
                             capture_output=True, text=True, timeout=120, check=False)
    assert refused.returncode == 1 and "70000" in refused.stdout + refused.stderr

    res = CliRunner().invoke(cli, ["validate", str(deploy)])
    assert res.exit_code == 0, res.output
