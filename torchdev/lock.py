"""Hash-pinned lock files: each variant's full Python closure, resolved for the image's Python and platform.

An image installs exactly the files its lock names (`pip install --require-hashes --no-deps -r LOCK`), so a
rebuild next year gets the same bytes or fails; `invoke lock --check` says when the matrix has moved on and a
lock has not. uv resolves for a Python and platform the host need not have; the lock's first line, torchdev's
own header, records what it was resolved from, and is what --check compares.
"""
from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Callable, Mapping, TextIO
from urllib.parse import unquote

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: requirements.txt installs tomli there
    import tomli as tomllib

from torchdev.credentials import PIP_ROUTE, Login, host_of, write_netrc
from torchdev.records import RecordError, read_text
from torchdev.errors import CONFIGURATION, RUNTIME, ConfigError, Problem, TorchdevError, joined
from torchdev.grammar import without_userinfo
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
NO_LOCK = Problem("variant '{variant}' has no lock for {platform} ({path}), so nothing pip installs in its image would "
                  "be checked against a hash", "run `{command}` (and commit the lock), or pass --unlocked to build it "
                  "unpinned", ConfigError, CONFIGURATION)
INDEX_LOGIN = Problem("variant '{variant}': {key} {url} asks for a login{given}", "give it through {route}",
                      TorchdevError, RUNTIME)


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


@dataclass(frozen=True)
class AddedSpec:
    """What the lock of a variant's added packages is resolved from: the variant's Python and platform, the main
    lock it is resolved against (its sha256: a main lock locked again makes the added one stale) and the added
    packages."""

    variant: str
    python: str
    platform: str
    main: str
    packages: tuple[str, ...]


ADDED_HEADER = "# torchdev added lock: "


def format_header(spec: LockSpec | AddedSpec) -> str:
    """One line of key=value words; each companion package is a `package=` word of its own (specs hold commas)."""
    words = [f"{f.name}={getattr(spec, f.name)}" for f in fields(spec) if f.name != "packages"]
    words += [f"package={package}" for package in spec.packages]
    prefix = ADDED_HEADER if isinstance(spec, AddedSpec) else HEADER
    return prefix + " ".join(shlex.quote(word) for word in words)


def parse_header(line: str, kind: type = LockSpec):
    """The spec (a `kind`, LockSpec or AddedSpec) a header line records, or None when the line is not a complete
    torchdev header of that kind."""
    prefix = ADDED_HEADER if kind is AddedSpec else HEADER
    if not line.startswith(prefix):
        return None
    try:
        words = shlex.split(line[len(prefix):])
    except ValueError:
        return None
    values: dict[str, str] = {}
    packages: list[str] = []
    for key, _, value in (word.partition("=") for word in words):
        if key == "package":
            packages.append(value)
        else:
            values[key] = value
    names = [f.name for f in fields(kind) if f.name != "packages"]
    if sorted(values) != sorted(names):
        return None
    return kind(**values, packages=tuple(packages))


def header_drift(*, expected: LockSpec | AddedSpec, found: LockSpec | AddedSpec) -> list[str]:
    """What differs between the matrix (expected) and a lock's header, one phrase per field."""
    changes = []
    for field in fields(expected):
        want, have = getattr(expected, field.name), getattr(found, field.name)
        if field.name == "packages":
            want, have = ", ".join(sorted(want)), ", ".join(sorted(have))
        if field.name == "main" and want != have:
            changes.append("the main lock has changed since it was resolved against it")
        elif want != have:
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


def added_spec(*, variant: Variant, platform: Platform, main_text: str) -> AddedSpec:
    """What the lock of the variant's added packages for `platform` must be resolved from, over the main lock's
    text."""
    return AddedSpec(variant=variant.name, python=variant.python, platform=platform.wheel_platform,
                     main=hashlib.sha256(main_text.encode()).hexdigest(), packages=variant.added_packages)


def added_drift(*, expected: AddedSpec, text: str | None) -> list[str]:
    """Everything that makes the added packages' lock (its text, or None) stale for the matrix and the main lock."""
    if text is None:
        return ["no lock of the added packages"]
    found = parse_header(text.partition("\n")[0], AddedSpec)
    if found is None:
        return [f"the first line is not a torchdev header ({ADDED_HEADER.strip()} ...)"]
    pins = locked_pins(text)
    problems = header_drift(expected=expected, found=found)
    for package in found.packages:
        match = REQUIREMENT_RE.match(package.strip())
        if match and pins.get(_normalized(match[1]), ("",))[0] != match[2]:
            problems.append(f"the lock pins no {match[1]}=={match[2]}")
    return problems + [f"{name}=={version} has no --hash" for name, (version, hashes) in pins.items() if not hashes]


def added_conflicts(packages: tuple[str, ...], main_text: str, *, lock_name: str) -> list[str]:
    """A line per added package the main lock pins at another version, naming both (one file per name)."""
    pins = locked_pins(main_text)
    lines = []
    for package in packages:
        match = REQUIREMENT_RE.match(package.strip())
        if match and _normalized(match[1]) in pins and pins[_normalized(match[1])][0] != match[2]:
            locked = pins[_normalized(match[1])][0]
            lines.append(f"{match[1]}=={match[2]} conflicts with the lock's {match[1]}=={locked} ({lock_name}): the "
                         f"image's own {match[1]} stays; leave {match[1]} out, or change the matrix's packages and "
                         "lock the variant again")
    return lines


def already_locked(packages: tuple[str, ...], main_text: str) -> tuple[str, ...]:
    """The added packages the main lock already pins at that very version (nothing to add)."""
    pins = locked_pins(main_text)
    return tuple(package for package in packages if (match := REQUIREMENT_RE.match(package.strip()))
                 and pins.get(_normalized(match[1]), ("",))[0] == match[2])


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def project_text(spec: LockSpec) -> str:
    """A throwaway pyproject.toml for uv: the torch family from the variant's index and from nowhere else
    (an explicit index: no other package is taken from it, read by `uv pip compile` with the input's own sources).
    Everything else comes from pip_index, which uv_command names: a `default` index in this file would not count,
    since --no-config keeps uv from reading it as configuration. A "default" index is left to uv's own default
    (PyPI), so no index host is written here."""
    requirements = [f"{name}=={getattr(spec, name)}" for name in TORCH_FAMILY] + list(spec.packages)
    lines = ["[project]", 'name = "torchdev-lock"', 'version = "0"',
             f"dependencies = [{', '.join(_toml_string(r) for r in requirements)}]", ""]
    if spec.index != DEFAULT_INDEX:
        lines += ["[tool.uv.sources]", *(f'{name} = {{ index = "torch" }}' for name in TORCH_FAMILY), "",
                  "[[tool.uv.index]]", 'name = "torch"', f"url = {_toml_string(spec.index)}", "explicit = true", ""]
    return "\n".join(lines)


def lock_hosts(spec: LockSpec) -> tuple[str, ...]:
    """The hosts uv asks for packages: the variant's index and pip_index, unless they are pip's default."""
    return tuple(dict.fromkeys(host_of(url) for url in (spec.index, spec.pip_index) if url != DEFAULT_INDEX))


def uv_command(*, uv: str, project: Path, spec: LockSpec) -> list[str]:
    """`uv pip compile` for the variant's Python and platform, as a PEP 751 lock on stdout: it lists, per package,
    only the files that suit that target, with their hashes. --no-config: no uv.toml of the host's takes part;
    --default-index: pip_index, for every package the torch index does not serve (PyPI when "default")."""
    default = ["--default-index", spec.pip_index] if spec.pip_index != DEFAULT_INDEX else []
    return [uv, "--no-config", "--no-python-downloads", "pip", "compile", str(project), *default,
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


def resolution_error(*, spec: LockSpec, stderr: str, logins: tuple[Login, ...] = ()) -> str:
    """uv's many-line error as one line, without any login a URL in it carries: an index that wants a login (and
    the route to give it), which index could not be reached (and what to do), or why no set of versions fits."""
    stderr = without_userinfo(stderr)
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if re.search(r"\b40[13]\b.*(Unauthorized|Forbidden)|(Unauthorized|Forbidden).*\b40[13]\b", stderr):
        for key, index in (("index", spec.index), ("pip_index", spec.pip_index)):
            if index != DEFAULT_INDEX and host_of(index) and host_of(index) in stderr:
                given = any(login.host == host_of(index) for login in logins)
                return INDEX_LOGIN.line(variant=spec.variant, key=key, url=index, route=PIP_ROUTE,
                                        given=" and refused the one given" if given else " and none was given")
    error = next((line for line in lines if line.startswith("error:")), "uv failed without a message")
    error = error.removeprefix("error:").strip()
    causes = [line.removeprefix("cause:").strip() for line in lines if line.startswith("cause:")]
    for key, index in (("index", spec.index), ("pip_index", spec.pip_index)):
        url = index.rstrip("/")
        if index != DEFAULT_INDEX and "Failed to fetch" in stderr and url in stderr:
            return (f"variant '{spec.variant}': cannot reach {key} {url}: {causes[-1] if causes else error}; "
                    f"set an overlay {key} that is reachable from here (docs/images.md, \"Overlays\"), or lock where it is")
    detail = f": {causes[0]}" if causes else ""
    return f"variant '{spec.variant}': uv cannot resolve torch {spec.torch} for Python {spec.python}: {error}{detail}"


def _uv_binary() -> str:
    try:
        from uv import find_uv_bin
    except ModuleNotFoundError:
        raise NO_UV(prefix=sys.prefix) from None
    return find_uv_bin()


def resolve(spec: LockSpec, *, logins: tuple[Login, ...] = (), environ: Mapping[str, str] | None = None,
            constraints: str = "", error: Callable[[str], str] | None = None) -> dict:
    """Run uv for one variant and return its PEP 751 lock as a dict; a failure raises one line (`error` makes it
    from uv's stderr; resolution_error by default). uv reads the logins for the spec's index hosts from a netrc of
    their own in the private temporary folder (NETRC), and no other. `constraints`: a requirements text every version
    must satisfy (the main lock's pins, when the added packages are resolved)."""
    hosts = lock_hosts(spec)
    with tempfile.TemporaryDirectory(prefix="torchdev-lock-") as folder:
        project = Path(folder) / "pyproject.toml"
        project.write_text(project_text(spec))
        netrc = write_netrc(Path(folder), tuple(login for login in logins if login.host in hosts))
        env = {key: value for key, value in (os.environ if environ is None else environ).items()
               if key != "NETRC"}
        env["NETRC"] = str(netrc) if netrc else os.devnull
        command = uv_command(uv=_uv_binary(), project=project, spec=spec)
        if constraints:
            (Path(folder) / "constraints.txt").write_text(constraints)
            command += ["--constraint", str(Path(folder) / "constraints.txt")]
        result = subprocess.run(command, cwd=folder, capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        line = error(result.stderr) if error else resolution_error(spec=spec, stderr=result.stderr, logins=logins)
        raise UNRESOLVED(line=line)
    return tomllib.loads(result.stdout)


def pins_text(main_text: str) -> str:
    """The main lock's pins as a constraints file: every locked name==version."""
    return "".join(f"{name}=={version}\n" for name, (version, _) in sorted(locked_pins(main_text).items()))


def added_resolution_error(*, spec: AddedSpec, stderr: str) -> str:
    """uv's failure to fit the added packages to the main lock, as one line with its first reason (which names the
    package and the locked version it conflicts with)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    reasons = [line.removeprefix("╰─▶").strip() for line in lines if line.startswith(("╰─▶", "Because", "And because"))]
    error = next((line.removeprefix("error:").strip() for line in lines if line.startswith("error:")),
                 "uv failed without a message")
    return (f"variant '{spec.variant}': the added packages {', '.join(spec.packages)} do not fit the lock: "
            f"{reasons[0] if reasons else error}; leave out the package that needs another version of a locked one")


def render_added_lock(*, spec: AddedSpec, pylock: dict, main_text: str, regenerate: str) -> str:
    """The added packages' lock: its header, then what the resolution holds beyond the main lock (whose pins it was
    held to), with hashes."""
    locked = locked_pins(main_text)
    added = [package for package in pylock["packages"] if _normalized(package["name"]) not in locked]
    lines = [format_header(spec), f"# Regenerate: {regenerate}",
             f"# The packages added on top of the variant's lock, resolved by uv for CPython {spec.python} on "
             f"{spec.platform} within it; every file pinned by hash:",
             "#   pip install --require-hashes --no-deps -r THIS_FILE (after the variant's lock)"]
    for package in sorted(added, key=lambda p: _normalized(p["name"])):
        lines.append(f"{package['name']}=={package['version']} \\")
        lines += _file_lines(package, variant=spec.variant)
    return "\n".join(lines) + "\n"


def added_lock_text(*, matrix: Matrix, variant: Variant, platform: Platform, main_text: str,
                    logins: tuple[Login, ...] = (), environ: Mapping[str, str] | None = None) -> str:
    """The added packages' lock for `platform`, resolved now (uv), held to the main lock `main_text`: the torch family
    and the matrix's packages resolve as the main lock did, every version pinned to its own, and the added packages
    with them; one line when they do not fit."""
    spec = added_spec(variant=variant, platform=platform, main_text=main_text)
    main = lock_spec(matrix=matrix, variant=variant, platform=platform)
    pylock = resolve(replace(main, packages=main.packages + variant.added_packages), logins=logins, environ=environ,
                     constraints=pins_text(main_text),
                     error=lambda stderr: added_resolution_error(spec=spec, stderr=stderr))
    return render_added_lock(spec=spec, pylock=pylock, main_text=main_text,
                             regenerate=regenerate_command(matrix=matrix, variant=variant, platform=platform))


def _shown(path: Path, *, root: Path) -> str:
    """`path` as written from the checkout's root, where ./dev runs (absolute when it lies elsewhere)."""
    path, root = path.absolute(), root.absolute()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def lock_name(matrix: Matrix, variant: Variant, platform: Platform = AMD64) -> str:
    """The variant's lock for `platform` as written from the checkout's root (overlays/local-debian/cu117.lock.txt)."""
    return _shown(matrix.lock_file(variant, platform), root=matrix.folder)


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
                  out: TextIO = sys.stdout, logins: tuple[Login, ...] = (),
                  environ: Mapping[str, str] | None = None) -> list[str]:
    """Write each variant's lock for each of its platforms (`platforms` chooses), and the lock of its added packages
    beside it, or with check=True compare them with the matrix and write nothing, saying how each went on `out` as
    it goes. One lock's failure does not stop the others: the result is a line per failure or drift (none when all
    is well)."""
    problems = []
    for chosen, platform in ((variant, platform) for variant in variants for platform in platforms(variant)):
        spec = lock_spec(matrix=matrix, variant=chosen, platform=platform)
        path = matrix.lock_file(chosen, platform)
        shown = _shown(path, root=matrix.folder)
        command = regenerate_command(matrix=matrix, variant=chosen, platform=platform)
        if check:
            text = lock_text(path, command=command)
            changes = drift(expected=spec, text=text)
            if changes:
                problems.append(f"lock drift: variant '{chosen.name}' on {platform} ({shown}): "
                                f"{'; '.join(changes)}: run `{command}`")
            else:
                print(f"{chosen.name} on {platform}: {shown} matches the matrix", file=out)
                problems += _check_added(matrix, chosen, platform, main_text=text or "", out=out)
            continue
        print(f"==> locking {chosen.name} (Python {spec.python}, {spec.platform}) into {shown}", file=out, flush=True)
        started = time.monotonic()
        try:
            pylock = resolve(spec, logins=logins, environ=environ)
            text = render_lock(spec=spec, pylock=pylock, regenerate=command)
        except TorchdevError as error:
            problems.append(f"{error} ({shown} is left as it was)")
            continue
        write_atomically(path, text)
        print(f"{chosen.name} on {platform}: {len(pylock['packages'])} packages locked with their hashes "
              f"in {time.monotonic() - started:.1f} s", file=out)
        problems += lock_added(matrix, chosen, platform, main_text=text, out=out, logins=logins,
                               environ=environ)
    return problems


def lock_added(matrix: Matrix, variant: Variant, platform: Platform, *, main_text: str,
               out: TextIO = sys.stdout, logins: tuple[Login, ...] = (),
               environ: Mapping[str, str] | None = None) -> list[str]:
    """Write the lock of the variant's added packages for `platform` over the main lock `main_text` (remove one no
    added package needs any more: torchdev wrote it); a line when they do not fit, the file then left as it was."""
    path = matrix.added_lock_file(variant, platform)
    shown = _shown(path, root=matrix.folder)
    if not variant.added_packages:
        if path.is_file():
            path.unlink()
            print(f"{variant.name} on {platform}: no added packages: removed {shown}", file=out)
        return []
    conflicts = added_conflicts(variant.added_packages, main_text, lock_name=_shown(
        matrix.lock_file(variant, platform), root=matrix.folder))
    if conflicts:
        return [f"variant '{variant.name}': {line}" for line in conflicts]
    started = time.monotonic()
    try:
        text = added_lock_text(matrix=matrix, variant=variant, platform=platform, main_text=main_text,
                               logins=logins, environ=environ)
    except TorchdevError as error:
        return [f"{error} ({shown} is left as it was)"]
    write_atomically(path, text)
    print(f"{variant.name} on {platform}: {len(variant.added_packages)} added packages locked into {shown} in "
          f"{time.monotonic() - started:.1f} s", file=out)
    return []


def _check_added(matrix: Matrix, variant: Variant, platform: Platform, *, main_text: str, out: TextIO) -> list[str]:
    """`lock --check` for the added packages' lock: a drift line, or nothing (and a line on `out` when it fits)."""
    path = matrix.added_lock_file(variant, platform)
    shown = _shown(path, root=matrix.folder)
    command = regenerate_command(matrix=matrix, variant=variant, platform=platform)
    if not variant.added_packages:
        return [f"lock drift: variant '{variant.name}' on {platform} ({shown}): a lock of added packages the matrix "
                f"no longer declares: run `{command}`"] if path.is_file() else []
    changes = added_drift(expected=added_spec(variant=variant, platform=platform, main_text=main_text),
                          text=lock_text(path, command=command))
    if changes:
        return [f"lock drift: variant '{variant.name}' on {platform} ({shown}): {'; '.join(changes)}: run `{command}`"]
    print(f"{variant.name} on {platform}: {shown} matches the matrix", file=out)
    return []


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
        return unfit_added_lock(matrix=matrix, variant=variant, platform=platform, main_text=text)
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


def missing_lock(*, matrix: Matrix, plan: BuildPlan, platform: Platform) -> str:
    """Why the plan may not be built for `platform` without a lock ('' when it has one, or --unlocked was chosen)."""
    if plan.unlocked or platform in {lock.platform for lock in plan.locks}:
        return ""
    return NO_LOCK.line(variant=plan.variant.name, platform=platform,
                        path=_shown(matrix.lock_file(plan.variant, platform), root=matrix.folder),
                        command=regenerate_command(matrix=matrix, variant=plan.variant, platform=platform))


def unfit_added_lock(*, matrix: Matrix, variant: Variant, platform: Platform, main_text: str) -> str:
    """Why the lock of the variant's added packages cannot build it over the main lock `main_text` ('' when it can, or
    when the variant adds none)."""
    if not variant.added_packages:
        return ""
    path = matrix.added_lock_file(variant, platform)
    command = regenerate_command(matrix=matrix, variant=variant, platform=platform)
    changes = added_drift(expected=added_spec(variant=variant, platform=platform, main_text=main_text),
                          text=lock_text(path, command=command))
    if not changes:
        return ""
    return (f"the lock of the added packages {_shown(path, root=matrix.folder)} does not fit variant "
            f"'{variant.name}' on {platform} ({'; '.join(changes)}): run `{command}`")


def require_fitting_locks(matrix: Matrix, plans: list[BuildPlan]) -> None:
    """Stop before any build when a variant has no lock for a platform it is built for (unless --unlocked made the
    plan so: exit 2), or its lock does not fit, with the one line `lock --check` would give (each once)."""
    missing = [missing_lock(matrix=matrix, plan=plan, platform=platform)
               for plan in plans for platform in plan.platforms]
    if any(missing):
        raise joined(list(dict.fromkeys(problem for problem in missing if problem)), ConfigError)
    problems = [unfit_lock(matrix=matrix, variant=plan.variant, platform=platform)
                for plan in plans for platform in plan.platforms]
    if any(problems):
        raise joined(list(dict.fromkeys(problem for problem in problems if problem)), TorchdevError)
