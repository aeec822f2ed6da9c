"""Hash-pinned lock files: each variant's full Python closure, resolved for the image's Python and platform.

An image installs exactly the files its lock names (`pip install --require-hashes --no-deps -r LOCK`), so a
rebuild next year gets the same bytes or fails; `invoke lock --check` says when the matrix has moved on and a
lock has not. uv resolves for a Python and platform the host need not have; the lock's first line, torchdev's
own header, records what it was resolved from, and is what --check compares.
"""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Callable, TextIO
from urllib.parse import unquote

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: requirements.txt installs tomli there
    import tomli as tomllib

from torchdev.records import RecordError, read_text
from torchdev.errors import RUNTIME, Problem, TorchdevError, joined
from torchdev.files import write_atomically
from torchdev.matrix import DEFAULT_INDEX, Matrix, Variant
from torchdev.plan import BuildPlan
from torchdev.platforms import AMD64, Platform

TORCH_FAMILY = ("torch", "torchvision", "torchaudio")
HEADER = "# torchdev lock: "
REQUIREMENT_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;,]+)(.*)$")

NO_FILE = Problem("variant '{variant}': {package}: uv found no file for it", "check the variant's index and "
                  "pip_index: neither serves that release for the variant's Python and platform", TorchdevError,
                  RUNTIME)
NO_SHA256 = Problem("variant '{variant}': {name}: its index gives no sha256, so it cannot be locked",
                    "use an index that publishes hashes (PEP 503's #sha256=), as PyPI and download.pytorch.org do",
                    TorchdevError, RUNTIME)
NO_UV = Problem("uv is not installed in {prefix}", "run ./dev once (it installs requirements.txt)", TorchdevError,
                RUNTIME)
UNRESOLVED = Problem("{line}", "", TorchdevError, RUNTIME)
"""uv's failure as one line with its fix (resolution_error)."""


@dataclass(frozen=True)
class LockSpec:
    """What a lock is resolved from: the matrix's side, and the fields of the lock's header line, in order."""

    variant: str
    python: str
    platform: str
    torch: str
    torchvision: str
    torchaudio: str
    index: str
    pip_index: str
    packages: tuple[str, ...]


def lock_spec(*, matrix: Matrix, variant: Variant, platform: Platform = AMD64) -> LockSpec:
    """What the variant's lock for `platform` must be resolved from. The header's platform is the wheel platform
    (aarch64-manylinux_2_28: glibc 2.28 or newer; Ubuntu 22.04 has 2.35, Debian 12 2.36): pip in the image may see
    newer wheels too, but --require-hashes keeps it to the ones locked."""
    return LockSpec(variant=variant.name, python=variant.python, platform=platform.wheel_platform, torch=variant.torch,
                    torchvision=variant.torchvision, torchaudio=variant.torchaudio, index=variant.index,
                    pip_index=matrix.image.pip_index, packages=matrix.image.packages)


def format_header(spec: LockSpec) -> str:
    """One line of key=value words; each companion package is a `package=` word of its own (specs hold commas)."""
    words = [f"{f.name}={getattr(spec, f.name)}" for f in fields(spec) if f.name != "packages"]
    words += [f"package={package}" for package in spec.packages]
    return HEADER + " ".join(shlex.quote(word) for word in words)


def parse_header(line: str) -> LockSpec | None:
    """The spec a header line records, or None when the line is not a complete torchdev header."""
    if not line.startswith(HEADER):
        return None
    try:
        words = shlex.split(line[len(HEADER):])
    except ValueError:
        return None
    values: dict[str, str] = {}
    packages: list[str] = []
    for key, _, value in (word.partition("=") for word in words):
        if key == "package":
            packages.append(value)
        else:
            values[key] = value
    names = [f.name for f in fields(LockSpec) if f.name != "packages"]
    if sorted(values) != sorted(names):
        return None
    return LockSpec(**values, packages=tuple(packages))


def header_drift(*, expected: LockSpec, found: LockSpec) -> list[str]:
    """What differs between the matrix (expected) and a lock's header, one phrase per field."""
    changes = []
    for field in fields(LockSpec):
        want, have = getattr(expected, field.name), getattr(found, field.name)
        if field.name == "packages":
            want, have = ", ".join(sorted(want)), ", ".join(sorted(have))
        if want != have:
            changes.append(f"{field.name} {have or '(none)'} in the lock, {want or '(none)'} in the matrix")
    return changes


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_pins(text: str) -> dict[str, tuple[str, int]]:
    """Each requirement of a lock: normalized name -> (pinned version, number of --hash options)."""
    pins = {}
    for line in text.replace("\\\n", " ").splitlines():
        match = REQUIREMENT_RE.match(line.strip())
        if match:
            pins[_normalized(match[1])] = (match[2], match[3].count("--hash=sha256:"))
    return pins


def pin_problems(*, spec: LockSpec, text: str) -> list[str]:
    """Where the lock's own pins disagree with its header, or a pin has no hash (pip would refuse it)."""
    pins = locked_pins(text)
    wanted = {name: getattr(spec, name) for name in TORCH_FAMILY}
    for package in spec.packages:
        match = REQUIREMENT_RE.match(package.strip())
        if match:
            wanted[_normalized(match[1])] = match[2]
    problems = []
    for name, version in wanted.items():
        locked = pins.get(name)
        if locked is None:
            problems.append(f"the lock pins no {name}")
        elif locked[0].split("+")[0] != version:  # a wheel index's local version (+cu118) is the same release
            problems.append(f"the lock pins {name}=={locked[0]}, its header says {version}")
    problems += [f"{name}=={version} has no --hash" for name, (version, hashes) in pins.items() if not hashes]
    return problems


def drift(*, expected: LockSpec, text: str | None) -> list[str]:
    """Everything that makes a lock (its text, or None when there is none) stale for the matrix."""
    if text is None:
        return ["no lock file"]
    found = parse_header(text.partition("\n")[0])
    if found is None:
        return [f"the first line is not a torchdev header ({HEADER.strip()} ...)"]
    return header_drift(expected=expected, found=found) + pin_problems(spec=found, text=text)


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def project_text(spec: LockSpec) -> str:
    """A throwaway pyproject.toml for uv: the torch family from the variant's index and from nowhere else
    (an explicit index: no other package is taken from it), everything else from pip_index. A "default"
    index is left to uv's own default (PyPI), so no index host is written here."""
    requirements = [f"{name}=={getattr(spec, name)}" for name in TORCH_FAMILY] + list(spec.packages)
    lines = ["[project]", 'name = "torchdev-lock"', 'version = "0"',
             f"dependencies = [{', '.join(_toml_string(r) for r in requirements)}]", ""]
    if spec.index != DEFAULT_INDEX:
        lines += ["[tool.uv.sources]", *(f'{name} = {{ index = "torch" }}' for name in TORCH_FAMILY), "",
                  "[[tool.uv.index]]", 'name = "torch"', f"url = {_toml_string(spec.index)}", "explicit = true", ""]
    if spec.pip_index != DEFAULT_INDEX:
        lines += ["[[tool.uv.index]]", 'name = "packages"', f"url = {_toml_string(spec.pip_index)}",
                  "default = true", ""]
    return "\n".join(lines)


def uv_command(*, uv: str, project: Path, spec: LockSpec) -> list[str]:
    """`uv pip compile` for the variant's Python and platform, as a PEP 751 lock on stdout: it lists, per package,
    only the files that suit that target, with their hashes. --no-config: no uv.toml of the host's takes part."""
    return [uv, "--no-config", "--no-python-downloads", "pip", "compile", str(project),
            "--python-version", spec.python, "--python-platform", spec.platform, "--format", "pylock.toml",
            "--no-header"]


def _file_lines(package: dict, *, variant: str) -> list[str]:
    """The --hash options and file-name comments of one package: its wheels, or its sdist when it has none."""
    files = package.get("wheels") or ([package["sdist"]] if "sdist" in package else [])
    if not files:
        raise NO_FILE(variant=variant, package=f"{package['name']}=={package['version']}")
    named = sorted((file.get("name") or unquote(file["url"].rsplit("/", 1)[-1]), file) for file in files)
    for name, file in named:
        if not file.get("hashes", {}).get("sha256"):
            raise NO_SHA256(variant=variant, name=name)
    hashes = [f"    --hash=sha256:{file['hashes']['sha256']}" for _, file in named]
    return [line + " \\" for line in hashes[:-1]] + hashes[-1:] + [f"    # {name}" for name, _ in named]


def render_lock(*, spec: LockSpec, pylock: dict, regenerate: str) -> str:
    """The lock file: the header, how to remake and use it, then every package of the closure with its hashes."""
    lines = [format_header(spec),
             f"# Regenerate: {regenerate}",
             f"# Resolved by uv for CPython {spec.python} on {spec.platform}; every file pinned by hash:",
             "#   pip install --require-hashes --no-deps -r THIS_FILE (with the variant's index and pip_index)"]
    for package in sorted(pylock["packages"], key=lambda p: _normalized(p["name"])):
        lines.append(f"{package['name']}=={package['version']} \\")
        lines += _file_lines(package, variant=spec.variant)
    return "\n".join(lines) + "\n"


def resolution_error(*, spec: LockSpec, stderr: str) -> str:
    """uv's many-line error as one line: which index could not be reached (and what to do), or why no set of
    versions fits."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    error = next((line for line in lines if line.startswith("error:")), "uv failed without a message")
    error = error.removeprefix("error:").strip()
    causes = [line.removeprefix("cause:").strip() for line in lines if line.startswith("cause:")]
    for key, index in (("index", spec.index), ("pip_index", spec.pip_index)):
        url = index.rstrip("/")
        if index != DEFAULT_INDEX and "Failed to fetch" in stderr and url in stderr:
            return (f"variant '{spec.variant}': cannot reach {key} {url}: {causes[-1] if causes else error}; "
                    f"set an overlay {key} that is reachable from here (README, \"Overlay\"), or lock where it is")
    detail = f": {causes[0]}" if causes else ""
    return f"variant '{spec.variant}': uv cannot resolve torch {spec.torch} for Python {spec.python}: {error}{detail}"


def _uv_binary() -> str:
    try:
        from uv import find_uv_bin
    except ModuleNotFoundError:
        raise NO_UV(prefix=sys.prefix) from None
    return find_uv_bin()


def resolve(spec: LockSpec) -> dict:
    """Run uv for one variant and return its PEP 751 lock as a dict; a failure raises one line."""
    with tempfile.TemporaryDirectory(prefix="torchdev-lock-") as folder:
        project = Path(folder) / "pyproject.toml"
        project.write_text(project_text(spec))
        result = subprocess.run(uv_command(uv=_uv_binary(), project=project, spec=spec), cwd=folder,
                                capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise UNRESOLVED(line=resolution_error(spec=spec, stderr=result.stderr))
    return tomllib.loads(result.stdout)


def _shown(path: Path, *, root: Path) -> str:
    """`path` as written from the checkout's root, where ./dev runs (absolute when it lies elsewhere)."""
    path, root = path.absolute(), root.absolute()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def lock_text(path: Path, *, command: str) -> str | None:
    """The lock at `path` (None when there is none); one line naming it and `command`, which writes it again, when it
    is no text file."""
    try:
        return read_text(path)
    except FileNotFoundError:
        return None
    except RecordError as error:
        raise RecordError(path, error.problem, fix=f"run `{command}` to write it again") from None


def regenerate_command(*, matrix: Matrix, variant: Variant, platform: Platform = AMD64) -> str:
    overlay = [f"--overlay {shlex.quote(_shown(matrix.overlay, root=matrix.folder))}"] if matrix.overlay else []
    only = [f"--platform {platform}"] if len(variant.platforms) > 1 else []
    return " ".join(["./dev lock --variant", variant.name, *only, *overlay])


def lock_variants(matrix: Matrix, variants: list[Variant], *, check: bool,
                  platforms: Callable[[Variant], tuple[Platform, ...]] = lambda variant: variant.platforms,
                  out: TextIO = sys.stdout) -> list[str]:
    """Write each variant's lock for each of its platforms (`platforms` chooses), or with check=True compare them with
    the matrix and write nothing, saying how each went on `out` as it goes. One lock's failure does not stop the
    others: the result is a line per failure or drift (none when all is well)."""
    problems = []
    for chosen, platform in ((variant, platform) for variant in variants for platform in platforms(variant)):
        spec = lock_spec(matrix=matrix, variant=chosen, platform=platform)
        path = matrix.lock_file(chosen, platform)
        shown = _shown(path, root=matrix.folder)
        command = regenerate_command(matrix=matrix, variant=chosen, platform=platform)
        if check:
            changes = drift(expected=spec, text=lock_text(path, command=command))
            if changes:
                problems.append(f"lock drift: variant '{chosen.name}' on {platform} ({shown}): "
                                f"{'; '.join(changes)}: run `{command}`")
            else:
                print(f"{chosen.name} on {platform}: {shown} matches the matrix", file=out)
            continue
        print(f"==> locking {chosen.name} (Python {spec.python}, {spec.platform}) into {shown}", file=out, flush=True)
        started = time.monotonic()
        try:
            pylock = resolve(spec)
            text = render_lock(spec=spec, pylock=pylock, regenerate=command)
        except TorchdevError as error:
            problems.append(f"{error} ({shown} is left as it was)")
            continue
        write_atomically(path, text)
        print(f"{chosen.name} on {platform}: {len(pylock['packages'])} packages locked with their hashes "
              f"in {time.monotonic() - started:.1f} s", file=out)
    return problems


def unfit_lock(*, matrix: Matrix, variant: Variant, platform: Platform = AMD64) -> str:
    """Why the variant's lock cannot build it ('' when it can, or when there is no lock: such builds resolve at
    build time). The comparison `lock --check` makes, but for the name, done before a build instead of failing
    deep inside pip.
    A lock images.yaml names is shared with every overlay that does not name its own: the advice then never
    overwrites it, it gives the overlay a lock of its own."""
    path = matrix.lock_file(variant, platform)
    text = lock_text(path, command=regenerate_command(matrix=matrix, variant=variant, platform=platform))
    if text is None:
        return ""
    found = parse_header(text.partition("\n")[0])
    expected = lock_spec(matrix=matrix, variant=variant, platform=platform)
    # The variant's name only labels a lock (`lock --check` still reports it): another variant with the same Python,
    # platform, torch and indexes installs the very same files from it.
    changes = drift(expected=replace(expected, variant=found.variant) if found else expected, text=text)
    if not changes:
        return ""
    root = matrix.folder
    cause = f"the lock {_shown(path, root=root)} does not fit variant '{variant.name}' on {platform} " \
            f"({'; '.join(changes)})"
    command = regenerate_command(matrix=matrix, variant=variant, platform=platform)
    overlay = matrix.overlay
    if overlay is not None and not matrix.declared_by_overlay("variants", variant.name, "lock"):
        own = overlay.parent / overlay.stem / f"{variant.name}.lock.txt"
        return (f"{cause}: the overlay {_shown(overlay, root=root)} changes the variant but shares images.yaml's "
                f"lock; give the overlay its own `lock: {_shown(own, root=root)}` under variants.{variant.name}, "
                f"then run `{command}`")
    return f"{cause}: run `{command}`"


def require_fitting_locks(matrix: Matrix, plans: list[BuildPlan]) -> None:
    """Stop before any build when a variant's lock for a platform it is built for does not fit, with the one line
    `lock --check` would give (each once)."""
    problems = [unfit_lock(matrix=matrix, variant=plan.variant, platform=platform)
                for plan in plans for platform in plan.platforms]
    if any(problems):
        raise joined(list(dict.fromkeys(problem for problem in problems if problem)), TorchdevError)
