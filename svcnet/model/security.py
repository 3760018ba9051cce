"""A pod's securityContext: what svcnet honours, how pod and container levels merge, what is wrong.

svcnet runs a pod's command as a plain process in the pod's network namespace: there is no image
and no container runtime. The node agent drops the process's privileges as a runtime would (user,
group, supplementary groups, capabilities, no_new_privs, with setpriv) and remounts its filesystems
read-only for readOnlyRootFilesystem. Fields that need a runtime (seccompProfile, appArmorProfile,
seLinuxOptions, fsGroup, procMount, windowsOptions, ...) are not declared in the schemas, so the
loader warns that they are ignored.

A pod whose securityContexts set none of the fields svcnet honours runs as before: as root with
every capability. Otherwise the Kubernetes semantics apply, including the container runtime's
default capability set (containerd's) as the base that `capabilities.add/drop` change.
"""

from __future__ import annotations

from dataclasses import dataclass

from svcnet.diagnostics import ERROR, WARNING
from svcnet.model.types import ProcessSecurity

Path_ = tuple[str | int, ...]

# Every Linux capability by its Kubernetes name (the kernel's without CAP_), in kernel order.
# The node agent holds the same list (it is shipped alone); a unit test keeps the two equal.
CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)
ALL = "ALL"
# What a container gets before its add/drop: containerd's default set (also Docker's).
RUNTIME_DEFAULT_CAPABILITIES = frozenset({
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID", "SETFCAP",
    "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
})
# The fields svcnet honours, per level; a container's own value of a shared field wins.
POD_FIELDS = ("runAsUser", "runAsGroup", "runAsNonRoot", "supplementalGroups")
CONTAINER_FIELDS = ("runAsUser", "runAsGroup", "runAsNonRoot", "capabilities", "privileged",
                    "readOnlyRootFilesystem", "allowPrivilegeEscalation")
SC = "securityContext"


@dataclass(frozen=True, slots=True)
class Finding:
    """A problem of one pod spec, at a path relative to that pod spec."""

    path: Path_
    message: str
    severity: str = ERROR


def command_container(pod_spec: dict) -> int | None:
    """Index of the container whose command svcnet runs (the first with one), or None."""
    for i, c in enumerate(pod_spec.get("containers") or ()):
        if isinstance(c, dict) and c.get("command"):
            return i
    return None


def _context(obj: object) -> dict:
    sc = obj.get(SC) if isinstance(obj, dict) else None
    return sc if isinstance(sc, dict) else {}


def _container(pod_spec: dict, index: int) -> dict:
    return (pod_spec.get("containers") or [])[index]


def _field(pod_spec: dict, index: int, name: str) -> tuple[object, Path_]:
    """The effective value of a field shared by both levels, and where it was set (None, () if unset)."""
    own = _context(_container(pod_spec, index))
    if own.get(name) is not None:
        return own[name], ("containers", index, SC, name)
    pod = _context(pod_spec)
    if pod.get(name) is not None:
        return pod[name], (SC, name)
    return None, ()


def _names(values: object) -> list[str]:
    """Capability names as containerd reads them (upper-cased)."""
    return [str(v).upper() for v in values] if isinstance(values, list) else []


def _capabilities(container_sc: dict) -> tuple[tuple[str, ...] | None, tuple[str, ...]]:
    """(bounding set, ambient set); None: every capability (privileged).

    In containerd's order: add ALL, drop ALL, then each single add, then each single drop.
    The added capabilities are also ambient, so a non-root process keeps them (there is no
    binary with file capabilities to give them to it, as there would be in an image).
    """
    if container_sc.get("privileged"):
        return None, ()
    caps = container_sc.get("capabilities") or {}
    add, drop = _names(caps.get("add")), _names(caps.get("drop"))
    have = set(CAPABILITIES) if ALL in add else set(RUNTIME_DEFAULT_CAPABILITIES)
    if ALL in drop:
        have = set()
    have |= set(add)
    have -= set(drop)
    bounding = tuple(c for c in CAPABILITIES if c in have)
    return bounding, tuple(c for c in bounding if ALL in add or c in add)


def _id(value: object) -> int:
    """A schema-checked user or group ID (an integer, possibly written 1000.0); unset means 0 (root)."""
    return int(value) if isinstance(value, int | float) else 0


def honoured(pod_spec: dict, index: int) -> bool:
    """Does the pod or the container set any field svcnet honours?"""
    pod, own = _context(pod_spec), _context(_container(pod_spec, index))
    return any(pod.get(f) is not None for f in POD_FIELDS) or any(own.get(f) is not None for f in CONTAINER_FIELDS)


def process_security(pod_spec: dict) -> ProcessSecurity | None:
    """How svcnet runs the pod's command; None: as root with every capability (no securityContext)."""
    index = command_container(pod_spec)
    if index is None or not honoured(pod_spec, index):
        return None
    own = _context(_container(pod_spec, index))
    uid = _id(_field(pod_spec, index, "runAsUser")[0])
    gid = _id(_field(pod_spec, index, "runAsGroup")[0])  # unset: no image, no passwd entry, so group 0
    supplemental = _context(pod_spec).get("supplementalGroups") or []
    bounding, ambient = _capabilities(own)
    return ProcessSecurity(
        uid=uid,
        gid=gid,
        groups=tuple(dict.fromkeys([gid, *(int(g) for g in supplemental)])),
        capabilities=bounding,
        ambient=ambient,
        no_new_privs=own.get("allowPrivilegeEscalation") is False,
        read_only_root=bool(own.get("readOnlyRootFilesystem")),
    )


def _container_findings(pod_spec: dict, index: int) -> list[Finding]:
    """Value problems of one container's securityContext (the API server would refuse them)."""
    own = _context(_container(pod_spec, index))
    base: Path_ = ("containers", index, SC)
    caps = own.get("capabilities") or {}
    out = []
    for word in ("add", "drop"):
        for j, name in enumerate(_names(caps.get(word))):
            if name != ALL and name not in CAPABILITIES:
                hint = f" (Kubernetes names have no CAP_ prefix: {name[4:]})" if name[4:] in CAPABILITIES else ""
                out.append(Finding((*base, "capabilities", word, j), f"unknown capability {name!r}{hint}"))
    if own.get("allowPrivilegeEscalation") is False:
        if own.get("privileged"):
            out.append(Finding((*base, "allowPrivilegeEscalation"),
                               "cannot be false for a privileged container"))
        if "SYS_ADMIN" in _names(caps.get("add")):
            out.append(Finding((*base, "allowPrivilegeEscalation"),
                               "cannot be false when capabilities.add holds SYS_ADMIN"))
    if own.get("privileged") and caps:
        out.append(Finding((*base, "capabilities"), "a privileged container has every capability: "
                           "capabilities are ignored", WARNING))
    return out


def _run_as_findings(pod_spec: dict, index: int) -> list[Finding]:
    """runAsNonRoot against the user the command will run as; runAsUser without runAsGroup."""
    out = []
    non_root, where = _field(pod_spec, index, "runAsNonRoot")
    uid, uid_where = _field(pod_spec, index, "runAsUser")
    gid, _ = _field(pod_spec, index, "runAsGroup")
    if non_root is True and not uid:
        why = "runAsUser is 0" if uid == 0 else "runAsUser is not set and there is no image to name a user"
        out.append(Finding(where, f"runAsNonRoot is true but the command would run as root ({why}); "
                                  "set runAsUser to a non-zero UID"))
    if uid and gid is None:
        out.append(Finding(uid_where, "runAsUser without runAsGroup: the command runs with group 0 (root), "
                                      "as a container without a passwd entry does; set runAsGroup", WARNING))
    return out


def check(pod_spec: dict) -> list[Finding]:
    """Every securityContext problem of one pod spec (a Pod's spec or a Deployment's template spec)."""
    containers = pod_spec.get("containers") or []
    out = [f for i in range(len(containers)) for f in _container_findings(pod_spec, i)]
    index = command_container(pod_spec)
    if index is not None:  # only the container svcnet runs has a user to check
        out.extend(_run_as_findings(pod_spec, index))
    return out
