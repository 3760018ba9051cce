"""`svcnet diff` as a user runs it: two paths or a git revision, the report, `--stat`, exit codes
0/1/2 as `git diff --exit-code`, and the located errors of `svcnet validate` for an invalid side."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from svcnet.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "examples" / "seed"
SPN = "k8s-test/service:http"
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.invalid", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


@pytest.fixture
def seeds(tmp_path: Path) -> tuple[Path, Path]:
    old, new = tmp_path / "old", tmp_path / "new"
    shutil.copytree(SEED, old)
    shutil.copytree(SEED, new)
    return old, new


def diff(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, ["diff", *args])


def test_same_descriptions_exit_0_and_print_no_diff(seeds: tuple[Path, Path]) -> None:
    res = diff(*map(str, seeds))
    assert res.exit_code == 0, res.output
    assert res.stdout == "" and "no change on any of 2 nodes" in res.stderr


def test_a_change_prints_per_node_a_diff_grouped_by_service_and_exits_1(seeds: tuple[Path, Path]) -> None:
    old, new = seeds
    edit(new / "service.yaml", "nodePort: 30000", "nodePort: 30001")
    res = diff(str(old), str(new))
    assert res.exit_code == 1, res.output
    out = res.stdout.splitlines()
    assert out[0] == (f"node node1: rules of 1 service port change ({SPN}); jump rules unchanged; "
                      "address config unchanged")
    assert out[1:3] == ["--- a/node1/rules.restore", "+++ b/node1/rules.restore"]
    assert re.fullmatch(rf"@@ -\d+,\d+ \+\d+,\d+ @@ \*nat {SPN}", out[3])
    assert f"-A KUBE-NODEPORTS -m comment --comment {SPN} -m tcp -p tcp --dport 30001 " in res.stdout
    assert out[-2:] == [out[0].replace("node1", "node2"), "(the rules change as on node node1)"]


def test_stat_counts_lines_per_node_and_service(seeds: tuple[Path, Path]) -> None:
    old, new = seeds
    edit(new / "deployment.yaml", "replicas: 2", "replicas: 3")
    res = diff("--stat", str(old), str(new))
    assert res.exit_code == 1
    assert res.stdout.splitlines() == [
        f"node1  {SPN}  +6 -2",
        f"node2  {SPN}  +6 -2",
        "node2  (address config)       +2 -0",
        "2 of 2 nodes change: rules of 1 service port, address config on 1 node; +14 -4 lines",
    ]


def test_an_invalid_side_gives_validates_located_errors_and_exit_1(seeds: tuple[Path, Path]) -> None:
    old, new = seeds
    edit(new / "service.yaml", "port: 8080", "port: 70000")
    res = diff(str(old), str(new))
    assert res.exit_code == 1 and res.stdout == ""
    assert f"{new / 'service.yaml'}:15:13: spec.ports[0].port: must be <= 65535, got 70000" in res.stderr
    assert f"the description {new} is invalid (1 error)" in res.stderr
    assert "Traceback" not in res.output


@pytest.mark.parametrize("args", [[], ["a", "b", "c"], ["a", "b", "-f", "c"], ["--unified", "-1", "a", "b"]])
def test_usage_errors_exit_2(args: list[str]) -> None:
    res = diff(*args)
    assert res.exit_code == 2 and "Traceback" not in res.output


# --------------------------------------------------------------------------- a git revision


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV}).stdout


def svcnet(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "svcnet.cli.main", "diff", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False, env={**os.environ, **GIT_ENV})


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository whose deploy/ holds the seed description, committed."""
    root = tmp_path / "repo"
    shutil.copytree(SEED, root / "deploy")
    (root / "deploy" / "notes").mkdir()
    (root / "deploy" / "notes" / "ignored.yaml").write_text("not: [a description\n")  # kubectl -f: not read
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "seed")
    return root


def test_revision_against_the_work_tree(repo: Path) -> None:
    assert svcnet(repo, "HEAD", "-f", "deploy").returncode == 0
    edit(repo / "deploy" / "service.yaml", "nodePort: 30000", "nodePort: 30001")
    res = svcnet(repo, "HEAD", "-f", "deploy")
    assert res.returncode == 1, res.stderr
    assert "--- a/node1/rules.restore" in res.stdout and f"*nat {SPN}" in res.stdout
    # a revision back, and the default -f: the current directory
    git(repo, "commit", "-q", "-am", "new node port")
    res = svcnet(repo / "deploy", "HEAD~1", "--stat")
    assert res.returncode == 1, res.stderr
    assert res.stdout.splitlines()[0] == f"node1  {SPN}  +1 -1"
    assert svcnet(repo / "deploy", "HEAD").returncode == 0


def test_an_invalid_description_at_the_revision_is_located_there(repo: Path) -> None:
    edit(repo / "deploy" / "service.yaml", "port: 8080", "port: 70000")
    git(repo, "commit", "-q", "-am", "broken")
    edit(repo / "deploy" / "service.yaml", "port: 70000", "port: 8080")
    res = svcnet(repo, "HEAD", "-f", "deploy")
    assert res.returncode == 1
    assert "HEAD:deploy/service.yaml:15:13: spec.ports[0].port: must be <= 65535, got 70000" in res.stderr
    assert "the description HEAD is invalid (1 error)" in res.stderr and "Traceback" not in res.stderr


def test_a_symlink_at_the_revision_is_refused_with_a_located_error(repo: Path) -> None:
    (repo / "deploy" / "link.yaml").symlink_to("/etc/hostname")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "link")
    res = svcnet(repo, "HEAD", "-f", "deploy")
    assert res.returncode == 1
    assert "HEAD:deploy/link.yaml:1:1: (file): a symbolic link: svcnet diff reads only regular files" in res.stderr


@pytest.mark.parametrize("rev", ["--output=OUT", "-p", "HEAD:deploy", "HEAD;touch OUT", "$(touch OUT)", "a b",
                                 "HEAD~1..HEAD", "", "nope"])
def test_a_bad_revision_is_a_usage_error_and_runs_nothing(repo: Path, rev: str) -> None:
    res = svcnet(repo, "-f", "deploy", "--", rev)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and not (repo / "OUT").exists()
    # refused before git sees it, except a well-formed name git does not know
    why = "no such commit" if rev == "nope" else "is not a git revision svcnet diff reads"
    assert res.stderr.startswith("svcnet: ") and why in res.stderr


def test_paths_outside_the_repository_or_no_repository_are_usage_errors(repo: Path, tmp_path: Path) -> None:
    # git is asked in the repository of the first path; the others must be in it too
    res = svcnet(repo, "HEAD", "-f", "deploy", "-f", str(tmp_path))
    assert res.returncode == 2 and "outside the git repository" in res.stderr
    plain = tmp_path / "plain"
    shutil.copytree(SEED, plain)
    res = svcnet(plain, "HEAD")
    assert res.returncode == 2 and "not a git repository" in res.stderr


def test_odd_path_names_reach_git_as_arguments_only(repo: Path) -> None:
    odd = repo / "a b;$(touch OUT)"
    shutil.copytree(SEED, odd)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "odd")
    edit(odd / "deployment.yaml", "replicas: 2", "replicas: 1")
    res = svcnet(repo, "HEAD", "-f", odd.name, "--stat")
    assert res.returncode == 1, res.stderr
    assert not (repo / "OUT").exists()


def test_files_given_one_by_one_and_a_file_new_in_the_work_tree(repo: Path) -> None:
    files = [arg for name in ("cluster", "service", "deployment") for arg in ("-f", f"deploy/{name}.yaml")]
    assert svcnet(repo, "HEAD", *files).returncode == 0
    extra = repo / "deploy" / "extra.yaml"
    extra.write_text((SEED / "service.yaml").read_text().replace("name: service", "name: extra")
                     .replace("clusterIP: 10.111.35.139", "clusterIP: 10.111.35.140").replace("30000", "30002"))
    res = svcnet(repo, "HEAD", *files, "-f", "deploy/extra.yaml", "--stat")
    # the file is not at HEAD: the old side is invalid, named as git names it
    assert res.returncode == 1 and "HEAD:deploy/extra.yaml:1:1: (file): no such file or directory" in res.stderr
    res = svcnet(repo, "HEAD", "-f", "deploy", "--stat")
    assert res.returncode == 1 and "k8s-test/extra:http" in res.stdout
