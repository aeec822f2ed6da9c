"""Kubernetes' Pod Security Standards, the Restricted policy (which includes the Baseline policy), written from
their specification field by field (kubernetes.io/docs/concepts/security/pod-security-standards; the version that
lists "Host Probes / Lifecycle Hooks (v1.34+)"), without a cluster: `restricted_violations` names every field of
a pod that a namespace labelled `pod-security.kubernetes.io/enforce: restricted` refuses.

Each check below is one row of the page's tables, its restricted fields and allowed values as the page gives them.
"All containers" is the page's `containers[*]`, `initContainers[*]` and `ephemeralContainers[*]`. Where the page
lets a container field be undefined because the pod-level field is set (runAsNonRoot, seccompProfile), the
container's own value wins and the pod's stands in for a missing one. The controls the page marks Linux-only
(privilege escalation, seccomp, capabilities) are skipped for `spec.os.name: windows`, as it says.
"""
from __future__ import annotations

from typing import Iterator

BASELINE_CAPABILITIES = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                         "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
RESTRICTED_CAPABILITIES = {"NET_BIND_SERVICE"}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
                "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                "net.ipv4.tcp_keepalive_probes"}
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}
SECCOMP_TYPES = {"RuntimeDefault", "Localhost"}
PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")


def containers(spec: dict) -> Iterator[tuple[str, dict]]:
    """(path, container) for every container of the pod: spec.containers[0], spec.initContainers[0], ..."""
    for kind in CONTAINER_LISTS:
        for index, container in enumerate(spec.get(kind) or []):
            yield f"spec.{kind}[{index}]", container


def _security(item: dict) -> dict:
    return item.get("securityContext") or {}


def _disallowed(path: str, value, allowed: str) -> str:
    return f"{path} is {value!r}; allowed: {allowed}"


def baseline_violations(spec: dict, metadata: dict | None = None) -> list[str]:
    """The Baseline policy's controls."""
    found: list[str] = []
    pod = _security(spec)
    annotations = (metadata or {}).get("annotations") or {}
    every = [("spec", spec, pod), *((path, c, _security(c)) for path, c in containers(spec))]

    # HostProcess
    for path, _, security in every:
        host_process = (security.get("windowsOptions") or {}).get("hostProcess")
        if host_process not in (None, False):
            found.append(_disallowed(f"{path}.securityContext.windowsOptions.hostProcess", host_process,
                                     "undefined, false"))
    # Host Namespaces
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field) not in (None, False):
            found.append(_disallowed(f"spec.{field}", spec[field], "undefined, false"))
    # Privileged Containers; Capabilities; /proc Mount Type
    for path, container, security in every[1:]:
        if security.get("privileged") not in (None, False):
            found.append(_disallowed(f"{path}.securityContext.privileged", security["privileged"], "undefined, false"))
        added = set((security.get("capabilities") or {}).get("add") or []) - BASELINE_CAPABILITIES
        if added:
            found.append(_disallowed(f"{path}.securityContext.capabilities.add", sorted(added),
                                     "the default set (AUDIT_WRITE, CHOWN, ..., SYS_CHROOT)"))
        if security.get("procMount") not in (None, "Default"):
            found.append(_disallowed(f"{path}.securityContext.procMount", security["procMount"], "undefined, Default"))
        # Host Ports
        for number, port in enumerate(container.get("ports") or []):
            if port.get("hostPort") not in (None, 0):
                found.append(_disallowed(f"{path}.ports[{number}].hostPort", port["hostPort"], "undefined, 0"))
        # Host Probes / Lifecycle Hooks
        handlers = [(probe, container.get(probe)) for probe in PROBES]
        handlers += [(f"lifecycle.{hook}", (container.get("lifecycle") or {}).get(hook))
                     for hook in ("postStart", "preStop")]
        for name, handler in handlers:
            for action in ("httpGet", "tcpSocket"):
                host = ((handler or {}).get(action) or {}).get("host")
                if host not in (None, ""):
                    found.append(_disallowed(f"{path}.{name}.{action}.host", host, 'undefined, ""'))
    # HostPath Volumes
    for index, volume in enumerate(spec.get("volumes") or []):
        if "hostPath" in volume:
            found.append(_disallowed(f"spec.volumes[{index}].hostPath", volume["hostPath"], "undefined"))
    # AppArmor
    for path, _, security in every:
        kind = (security.get("appArmorProfile") or {}).get("type")
        if kind not in (None, "RuntimeDefault", "Localhost"):
            found.append(_disallowed(f"{path}.securityContext.appArmorProfile.type", kind,
                                     "undefined, RuntimeDefault, Localhost"))
    for key, value in annotations.items():
        if key.startswith("container.apparmor.security.beta.kubernetes.io/") and value != "runtime/default" \
                and not value.startswith("localhost/"):
            found.append(_disallowed(f"metadata.annotations[{key!r}]", value, "runtime/default, localhost/*"))
    # SELinux
    for path, _, security in every:
        options = security.get("seLinuxOptions") or {}
        if options.get("type", "") not in SELINUX_TYPES:
            found.append(_disallowed(f"{path}.securityContext.seLinuxOptions.type", options["type"],
                                     "undefined, container_t, container_init_t, container_kvm_t, container_engine_t"))
        for field in ("user", "role"):
            if options.get(field, "") != "":
                found.append(_disallowed(f"{path}.securityContext.seLinuxOptions.{field}", options[field],
                                         'undefined, ""'))
    # Seccomp (Baseline: never Unconfined)
    for path, _, security in every:
        kind = (security.get("seccompProfile") or {}).get("type")
        if kind == "Unconfined":
            found.append(_disallowed(f"{path}.securityContext.seccompProfile.type", kind,
                                     "undefined, RuntimeDefault, Localhost"))
    # Sysctls
    for index, sysctl in enumerate(pod.get("sysctls") or []):
        if sysctl.get("name") not in SAFE_SYSCTLS:
            found.append(_disallowed(f"spec.securityContext.sysctls[{index}].name", sysctl.get("name"),
                                     "the safe set (kernel.shm_rmid_forced, net.ipv4.ip_local_port_range, ...)"))
    return found


def restricted_violations(spec: dict, metadata: dict | None = None) -> list[str]:
    """Everything from the Baseline policy, and the Restricted policy's own controls; [] for a pod it admits."""
    found = baseline_violations(spec, metadata)
    pod = _security(spec)
    linux = (spec.get("os") or {}).get("name") != "windows"

    # Volume Types
    for index, volume in enumerate(spec.get("volumes") or []):
        if not any(volume.get(kind) is not None for kind in RESTRICTED_VOLUMES):
            kinds = sorted(set(volume) - {"name"})
            found.append(_disallowed(f"spec.volumes[{index}]", kinds, ", ".join(sorted(RESTRICTED_VOLUMES))))
    # Running as Non-root: true on the pod, or on every container; never false
    if pod.get("runAsNonRoot") is False:
        found.append(_disallowed("spec.securityContext.runAsNonRoot", False, "true"))
    # Running as Non-root user: runAsUser never 0
    if pod.get("runAsUser") == 0:
        found.append(_disallowed("spec.securityContext.runAsUser", 0, "any non-zero value, undefined"))
    pod_seccomp = (pod.get("seccompProfile") or {}).get("type")
    for path, container in containers(spec):
        security = _security(container)
        non_root = security.get("runAsNonRoot", pod.get("runAsNonRoot"))
        if non_root is not True:
            found.append(_disallowed(f"{path}.securityContext.runAsNonRoot", non_root,
                                     "true (or undefined where spec.securityContext.runAsNonRoot is true)"))
        if security.get("runAsUser") == 0:
            found.append(_disallowed(f"{path}.securityContext.runAsUser", 0, "any non-zero value, undefined"))
        if not linux:
            continue
        # Privilege Escalation: explicitly false
        if security.get("allowPrivilegeEscalation") is not False:
            found.append(_disallowed(f"{path}.securityContext.allowPrivilegeEscalation",
                                     security.get("allowPrivilegeEscalation"), "false"))
        # Seccomp: RuntimeDefault or Localhost, the container's or else the pod's
        seccomp = (security.get("seccompProfile") or {}).get("type") or pod_seccomp
        if seccomp not in SECCOMP_TYPES:
            found.append(_disallowed(f"{path}.securityContext.seccompProfile.type", seccomp,
                                     "RuntimeDefault, Localhost (or undefined where the pod's is)"))
        # Capabilities: drop ALL, add only NET_BIND_SERVICE
        capabilities = security.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            found.append(_disallowed(f"{path}.securityContext.capabilities.drop", capabilities.get("drop"),
                                     "any list that includes ALL"))
        added = set(capabilities.get("add") or []) - RESTRICTED_CAPABILITIES
        if added:
            found.append(_disallowed(f"{path}.securityContext.capabilities.add", sorted(added),
                                     "undefined, NET_BIND_SERVICE"))
    return found
