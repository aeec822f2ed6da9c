"""How containers get NVIDIA GPUs on this engine, what each variant asks for, and what a refusal means.

Three routes reach the same GPUs: the `nvidia` runtime registered with dockerd, the nvidia-container-runtime-hook
on dockerd's PATH (both serve `--gpus`, the SDK's DeviceRequest with the "gpu" capability), and CDI devices
(`nvidia-ctk cdi generate`, `nvidia.com/gpu=all`). An engine may show none of them in `docker info` and still
serve `--gpus` (the hook alone, Docker Desktop): then only a container started with `--gpus` tells, and that
answer is what counts. All of it is pure: the engine's answers, and the host's CDI spec files, are read by
torchdev.gpuprobe and handed in.
"""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from smoke.smoke_contract import GPUS_AUTO, GpusError, KernelSupport, format_gpus, parse_gpus
from smoke.smoke_contract import kernel_support as support_on  # gpus.kernel_support takes "9.0", as the doctor has it
from smoke.startup_checks import branch_exception, version_tuple  # noqa: F401 - the driver rules, shared with containers
from torchdev.engine import GpuDevices, RunResult, RunStatus
from torchdev.errors import USAGE, Problem, UsageError
from torchdev.matrix import Variant

CDI_KIND = "nvidia.com/gpu"
BAD_GPUS = Problem("--gpus must be auto, all, none or a count, not '{value}'", "write one of them", UsageError, USAGE)
GPUS_FOR_CPU = Problem("--gpus {gpus} asks GPUs for {variants}, which has no CUDA", "use --gpus auto (GPUs only where "
                       "CUDA is) or --gpus none, or choose CUDA variants", UsageError, USAGE)
NO_DRIVER = re.compile(r'could not select device driver "[^"]*" with capabilities: \[\[gpu\]\]')
TOOLKIT_FIX = ("install the NVIDIA Container Toolkit, then either `sudo nvidia-ctk runtime configure --runtime=docker` "
               "and restart Docker, or `sudo nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml` with CDI enabled "
               "in daemon.json (docs/troubleshooting.md)")


class Route(enum.Enum):
    NONE = "none"
    DRIVER = "--gpus"     # the nvidia runtime or hook: DeviceRequest(capabilities=[["gpu"]])
    CDI = "CDI"           # DeviceRequest(driver="cdi", device_ids=["nvidia.com/gpu=..."])


@dataclass(frozen=True)
class GpuAccess:
    """How this engine gives containers GPUs, and the evidence, in words for the doctor and the summary."""

    route: Route
    evidence: str
    cdi_devices: tuple[str, ...] = ()
    problem: str = ""  # the route is there, but a GPU container did not start: why, with the fix


def cdi_devices(info: dict) -> tuple[str, ...]:
    """NVIDIA CDI device names the engine lists (Engine 27+: DiscoveredDevices entries are {"Source", "ID"})."""
    found = []
    for device in info.get("DiscoveredDevices") or []:
        name = device.get("ID", "") if isinstance(device, dict) else str(device)
        if (not isinstance(device, dict) or device.get("Source") == "cdi") and name.startswith(f"{CDI_KIND}="):
            found.append(name)
    return tuple(found)


def needs_probe(info: dict, *, spec_devices: tuple[str, ...]) -> bool:
    """Whether `docker info` and the CDI specs leave the question open, so a --gpus container must answer it."""
    return "nvidia" not in (info.get("Runtimes") or {}) and not cdi_devices(info) and not spec_devices


def detect(info: dict, *, spec_devices: tuple[str, ...] = (), probe: RunResult | None = None) -> GpuAccess:
    """The route containers get GPUs by. `spec_devices`: NVIDIA devices in the CDI spec folders the engine reads
    (Engine 26 lists none itself); `probe`: how a container started with --gpus all went, when it was tried."""
    if "nvidia" in (info.get("Runtimes") or {}):
        return GpuAccess(Route.DRIVER, "the nvidia runtime is registered with the engine")
    listed = cdi_devices(info) or spec_devices
    if listed and (info.get("CDISpecDirs") or cdi_devices(info)):
        return GpuAccess(Route.CDI, f"CDI devices {', '.join(listed)}", listed)
    desktop = " (Docker Desktop)" if info.get("OperatingSystem") == "Docker Desktop" else ""
    if probe is None:
        return GpuAccess(Route.NONE, f"no nvidia runtime or CDI GPU devices{desktop}, and no image to try --gpus with")
    if probe.status is RunStatus.EXITED:
        return GpuAccess(Route.DRIVER, f"a container started with --gpus all{desktop} (nvidia-container-runtime-hook)")
    if NO_DRIVER.search(probe.output):
        return GpuAccess(Route.NONE, f"no nvidia runtime, hook or CDI GPU devices in the engine{desktop}")
    return GpuAccess(Route.DRIVER, f"the engine takes --gpus{desktop}", problem=start_failure(probe.output))


@dataclass(frozen=True)
class GpuRequest:
    """What one variant's container gets: `count` GPUs (0 none, -1 all) by `route`; `chosen_by_auto` when the user
    left it to --gpus auto, so a CUDA variant tested without GPUs can be told apart from one asked to."""

    count: int
    route: Route = Route.NONE
    cdi_devices: tuple[str, ...] = ()
    chosen_by_auto: bool = False

    @property
    def suite_option(self) -> str:
        return format_gpus(self.count)

    def devices(self) -> GpuDevices:
        if self.count == 0:
            return GpuDevices()
        if self.route is Route.CDI:
            wanted = self.cdi_devices or tuple(f"{CDI_KIND}={index}" for index in range(max(self.count, 1)))
            return GpuDevices(cdi=(f"{CDI_KIND}=all",) if self.count < 0 else wanted[:self.count])
        return GpuDevices(count=self.count)

    def environment(self) -> dict[str, str]:
        """No GPUs means none, also where the engine's default runtime is nvidia and the image says
        NVIDIA_VISIBLE_DEVICES=all: `void` makes the toolkit leave the container alone."""
        return {} if self.count else {"NVIDIA_VISIBLE_DEVICES": "void"}


def parse_option(value: str) -> int | None:
    """--gpus auto|all|none|N as a count (-1 all, 0 none); None for auto. The grammar is the smoke suite's too."""
    try:
        return parse_gpus(value)
    except GpusError as error:
        raise BAD_GPUS(value=value) from None


def check_option(count: int | None, variants: list[Variant]) -> None:
    """GPUs asked for by name or count (parse_option's) go to CUDA variants only: a CPU build cannot use them."""
    cpu = [variant.name for variant in variants if variant.cuda is None]
    if count and cpu:
        raise GPUS_FOR_CPU(gpus=format_gpus(count), variants=", ".join(cpu))


def request_for(variant: Variant, count: int | None, access: GpuAccess) -> GpuRequest:
    """The GPUs `variant` gets for --gpus (parse_option's count): auto gives a CUDA variant every GPU the engine
    offers and a CPU variant none; an explicit request is never refused here when detection found nothing (the
    engine answers)."""
    route = Route.CDI if access.route is Route.CDI else Route.DRIVER
    if count is GPUS_AUTO:
        if variant.cuda is None or access.route is Route.NONE:
            return GpuRequest(0, chosen_by_auto=True)
        return GpuRequest(-1, route, access.cdi_devices, chosen_by_auto=True)
    return GpuRequest(count, route if count else Route.NONE, access.cdi_devices)


START_FAILURES = (
    (re.compile(r"unsatisfied condition: (cuda[<>=]+[\d.]+)"),
     "the host's NVIDIA driver is too old for this image (the NVIDIA toolkit refused: unsatisfied condition: {0})",
     "upgrade the driver (`./dev doctor` names the minimum per variant) or use a variant built for an older CUDA"),
    (NO_DRIVER, "the engine cannot give containers GPUs: no nvidia runtime, hook or CDI devices",
     f"{TOOLKIT_FIX}; or run with --gpus none"),
    (re.compile(r"unresolvable CDI devices ([^\s:]+)"), "the engine has no CDI device {0}",
     "ask for fewer GPUs (--gpus N), or regenerate the spec: `sudo nvidia-ctk cdi generate "
     "--output=/etc/cdi/nvidia.yaml`"),
    (re.compile(r"device error: ([^\s:]+): unknown device"), "GPU {0} does not exist on this host",
     "ask for at most as many GPUs as `nvidia-smi -L` lists (--gpus N)"),
    (re.compile(r"error setting rlimit type 8"),
     "the engine may not raise the locked-memory limit GPU runs ask for (rootless Docker, a sandboxed engine)",
     "set TORCHDEV_MEMLOCK to what it allows, e.g. TORCHDEV_MEMLOCK=8388608 (`./dev doctor`, memlock line)"),
    (re.compile(r"nvidia-container-cli: initialization error: ([^:\n]+)"),
     "the NVIDIA toolkit found no working driver on the host ({0})",
     "check `nvidia-smi` on the host; reboot after a driver or kernel update"),
)


def start_failure(output: str) -> str:
    """Why a container did not start, in one line with its fix: the toolkit's refusals by name, else the engine's
    last line without the runtime's nesting."""
    for pattern, cause, fix in START_FAILURES:
        found = pattern.search(output)
        if found:
            return f"{cause.format(*found.groups())}: {fix}"
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()] or ["the engine gave no reason"]
    return lines[-1].removesuffix(": unknown")


def kernel_support(capability: str, architectures: list[str]) -> KernelSupport:
    """How a GPU of `capability` ("9.0", as nvidia-smi says it) runs kernels built for `architectures`: the smoke
    suite's rule (smoke_contract.kernel_support), which judges the same GPUs from inside the image."""
    major, minor = (int(part) for part in capability.split("."))
    return support_on((major, minor), architectures)


