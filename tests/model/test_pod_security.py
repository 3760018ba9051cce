"""A pod's securityContext: merged pod and container levels, capabilities, located errors and warnings."""

from __future__ import annotations

from pathlib import Path

import pytest

from svcnet.agent import node
from svcnet.diagnostics import errors, warnings
from svcnet.model import security
from svcnet.model.load import check_paths, load_cluster
from svcnet.model.types import ProcessSecurity
from svcnet.render.artifacts import node_artifacts_all
from svcnet.transport import protocol

BASE = Path(__file__).resolve().parents[1] / "validate" / "good" / "base-cluster.yaml"
SEED = Path(__file__).resolve().parents[2] / "examples" / "seed"

POD = """\
apiVersion: v1
kind: Pod
metadata: {{name: web, namespace: t}}
spec:
  nodeName: node1
{pod}
  containers:
    - name: sidecar
    - name: web
      command: [python3, -m, http.server]
{container}
"""


def pod_yaml(pod_sc: str = "", container_sc: str = "") -> str:
    """A Pod whose second container runs the command; each context given as flow YAML (or nothing)."""
    return POD.format(pod=f"  securityContext: {pod_sc}" if pod_sc else "",
                      container=f"      securityContext: {container_sc}" if container_sc else "")


def checked(tmp_path: Path, text: str):
    f = tmp_path / "pod.yaml"
    f.write_text(text)
    return f, check_paths([BASE, f])


def sec(tmp_path: Path, pod_sc: str = "", container_sc: str = "") -> ProcessSecurity | None:
    f, result = checked(tmp_path, pod_yaml(pod_sc, container_sc))
    assert result.ok, [str(d) for d in result.diagnostics]
    (pod,) = load_cluster([BASE, f]).pods
    return pod.security


def messages(tmp_path: Path, text: str) -> tuple[list[str], list[str]]:
    """(errors, warnings) as `svcnet validate` prints them, without the file name."""
    f, result = checked(tmp_path, text)
    strip = f"{f}:"
    return ([str(d).removeprefix(strip) for d in errors(result.diagnostics)],
            [str(d).removeprefix(strip) for d in warnings(result.diagnostics)])


def test_without_a_security_context_the_pod_runs_as_before(tmp_path):
    assert sec(tmp_path) is None
    assert all(p.security is None for p in load_cluster([SEED]).pods)
    # only fields svcnet cannot honour: as before too (and a warning says they are ignored)
    assert sec(tmp_path, "{seccompProfile: {type: RuntimeDefault}}") is None


def test_user_group_and_supplementary_groups(tmp_path):
    got = sec(tmp_path, "{runAsUser: 1000, runAsGroup: 3000, supplementalGroups: [4000, 3000, 5000]}")
    assert got == ProcessSecurity(uid=1000, gid=3000, groups=(3000, 4000, 5000),
                                  capabilities=tuple(c for c in security.CAPABILITIES
                                                     if c in security.RUNTIME_DEFAULT_CAPABILITIES))


def test_the_container_level_wins_over_the_pod_level(tmp_path):
    got = sec(tmp_path, "{runAsUser: 1000, runAsGroup: 3000, runAsNonRoot: true}", "{runAsUser: 2000}")
    assert got is not None and (got.uid, got.gid) == (2000, 3000)


def test_a_user_without_a_group_gets_group_0_with_a_warning(tmp_path):
    got = sec(tmp_path, "", "{runAsUser: 1000}")
    assert got is not None and (got.uid, got.gid, got.groups) == (1000, 0, (0,))
    errs, warns = messages(tmp_path, pod_yaml("", "{runAsUser: 1000}"))
    assert errs == [] and warns == [
        "11:36: spec.containers[1].securityContext.runAsUser: warning: runAsUser without runAsGroup: the command "
        "runs with group 0 (root), as a container without a passwd entry does; set runAsGroup"]


@pytest.mark.parametrize(("caps", "bounding", "ambient"), [
    ("{drop: [ALL]}", (), ()),
    ("{drop: [ALL], add: [NET_BIND_SERVICE]}", ("NET_BIND_SERVICE",), ("NET_BIND_SERVICE",)),
    ("{add: [net_admin], drop: [NET_RAW, MKNOD]}",
     tuple(sorted(security.RUNTIME_DEFAULT_CAPABILITIES - {"NET_RAW", "MKNOD"} | {"NET_ADMIN"},
                  key=security.CAPABILITIES.index)), ("NET_ADMIN",)),
    ("{add: [ALL], drop: [SYS_ADMIN]}", tuple(c for c in security.CAPABILITIES if c != "SYS_ADMIN"),
     tuple(c for c in security.CAPABILITIES if c != "SYS_ADMIN")),
    ("{add: [KILL], drop: [KILL]}",  # as containerd: a single drop wins over a single add
     tuple(c for c in security.CAPABILITIES if c in security.RUNTIME_DEFAULT_CAPABILITIES - {"KILL"}), ()),
])
def test_capabilities_start_from_the_runtime_default(tmp_path, caps, bounding, ambient):
    got = sec(tmp_path, "", f"{{capabilities: {caps}}}")
    assert got is not None and (got.capabilities, got.ambient) == (bounding, ambient)


def test_privileged_no_new_privs_and_read_only_root(tmp_path):
    got = sec(tmp_path, "", "{privileged: true, readOnlyRootFilesystem: true}")
    assert got is not None and (got.capabilities, got.no_new_privs, got.read_only_root) == (None, False, True)
    got = sec(tmp_path, "", "{allowPrivilegeEscalation: false}")
    assert got is not None and got.no_new_privs and not got.read_only_root


@pytest.mark.parametrize(("pod_sc", "container_sc", "expected"), [
    ("{runAsNonRoot: true}", "",
     "6:35: spec.securityContext.runAsNonRoot: runAsNonRoot is true but the command would run as root (runAsUser "
     "is not set and there is no image to name a user); set runAsUser to a non-zero UID"),
    ("{runAsUser: 1000, runAsGroup: 1}", "{runAsNonRoot: true, runAsUser: 0}",
     "11:39: spec.containers[1].securityContext.runAsNonRoot: runAsNonRoot is true but the command would run as "
     "root (runAsUser is 0); set runAsUser to a non-zero UID"),
    ("", "{capabilities: {add: [CAP_NET_ADMIN]}}",
     "11:46: spec.containers[1].securityContext.capabilities.add[0]: unknown capability 'CAP_NET_ADMIN' "
     "(Kubernetes names have no CAP_ prefix: NET_ADMIN)"),
    ("", "{capabilities: {drop: [ALL, NET_BOGUS]}}",
     "11:52: spec.containers[1].securityContext.capabilities.drop[1]: unknown capability 'NET_BOGUS'"),
    ("", "{privileged: true, allowPrivilegeEscalation: false}",
     "11:69: spec.containers[1].securityContext.allowPrivilegeEscalation: cannot be false for a privileged "
     "container"),
    ("", "{allowPrivilegeEscalation: false, capabilities: {add: [SYS_ADMIN]}}",
     "11:51: spec.containers[1].securityContext.allowPrivilegeEscalation: cannot be false when capabilities.add "
     "holds SYS_ADMIN"),
    ("{runAsUser: 2147483648}", "",
     "6:32: spec.securityContext.runAsUser: must be <= 2147483647, got 2147483648"),
    ("{supplementalGroups: [-1]}", "",
     "6:42: spec.securityContext.supplementalGroups[0]: must be >= 0, got -1"),
    ("", "{capabilities: {add: ['NET_ADMIN,+sys_admin']}}",
     "11:46: spec.containers[1].securityContext.capabilities.add[0]: 'NET_ADMIN,+sys_admin' is not a capability "
     "name such as NET_BIND_SERVICE, or ALL"),
])
def test_bad_contexts_are_located_errors(tmp_path, pod_sc, container_sc, expected):
    errs, _ = messages(tmp_path, pod_yaml(pod_sc, container_sc))
    assert errs == [expected]


def test_run_as_non_root_is_fine_with_a_non_root_user_or_when_nothing_runs(tmp_path):
    assert messages(tmp_path, pod_yaml("{runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000}")) == ([], [])
    nothing_runs = pod_yaml("{runAsNonRoot: true}").replace("      command: [python3, -m, http.server]\n", "")
    assert messages(tmp_path, nothing_runs) == ([], [])


def test_ignored_fields_are_located_warnings(tmp_path):
    errs, warns = messages(tmp_path, pod_yaml(
        "{fsGroup: 2000, seLinuxOptions: {level: 's0'}}",
        "{seccompProfile: {type: RuntimeDefault}, appArmorProfile: {type: RuntimeDefault}, procMount: Default,"
        " windowsOptions: {}, privileged: true, capabilities: {drop: [ALL]}}"))
    assert errs == []
    assert warns == [
        "11:24: spec.containers[1].securityContext: warning: field 'appArmorProfile' is not used by svcnet and is "
        "ignored",
        "11:24: spec.containers[1].securityContext: warning: field 'procMount' is not used by svcnet and is ignored",
        "11:24: spec.containers[1].securityContext: warning: field 'seccompProfile' is not used by svcnet and is "
        "ignored",
        "11:24: spec.containers[1].securityContext: warning: field 'windowsOptions' is not used by svcnet and is "
        "ignored",
        "6:20: spec.securityContext: warning: field 'fsGroup' is not used by svcnet and is ignored",
        "6:20: spec.securityContext: warning: field 'seLinuxOptions' is not used by svcnet and is ignored",
        "11:178: spec.containers[1].securityContext.capabilities: warning: a privileged container has every "
        "capability: capabilities are ignored",
    ]


def test_a_deployment_is_reported_once_not_per_replica(tmp_path):
    errs, _ = messages(tmp_path, """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: d, namespace: t}
spec:
  replicas: 3
  selector: {matchLabels: {app: d}}
  template:
    metadata: {labels: {app: d}}
    spec:
      securityContext: {runAsNonRoot: true}
      containers: [{name: c, command: [sleep, "9"]}]
""")
    assert errs == ["10:39: spec.template.spec.securityContext.runAsNonRoot: runAsNonRoot is true but the command "
                    "would run as root (runAsUser is not set and there is no image to name a user); set runAsUser "
                    "to a non-zero UID"]


def test_the_agent_knows_the_same_capabilities():
    assert node.CAPABILITIES == security.CAPABILITIES
    assert set(security.CAPABILITIES) >= security.RUNTIME_DEFAULT_CAPABILITIES


def test_the_agent_receives_the_security_and_accepts_it(tmp_path):
    f, result = checked(tmp_path, pod_yaml("{runAsUser: 65534, runAsGroup: 65534}",
                                           "{capabilities: {drop: [ALL]}, readOnlyRootFilesystem: true}"))
    assert result.ok
    art = node_artifacts_all(load_cluster([BASE, f]), ["node1"])["node1"]
    (pod,) = node.validate_netconf(protocol.netconf_payload(art.netconf))["pods"]
    assert pod["security"] == {"uid": 65534, "gid": 65534, "groups": [65534], "capabilities": [], "ambient": [],
                               "no_new_privs": False, "read_only_root": True}
    assert node.pod_spec(pod)["security"] == pod["security"]  # part of the spec hash: a change restarts it


def test_a_pod_without_security_keeps_its_spec_hash():
    art = node_artifacts_all(load_cluster([SEED]), ["node1"])["node1"]
    (pod,) = protocol.netconf_payload(art.netconf)["pods"]
    assert "security" not in pod and "security" not in node.pod_spec(pod)
