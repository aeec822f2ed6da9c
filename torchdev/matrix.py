"""images.yaml (plus an optional overlay) parsed and strictly validated into frozen dataclasses.

Validation happens before anything touches Docker: a typo in the matrix should cost a second, not a
failed 5 GB build. Every problem is reported as `file:line: variant 'x': key 'y': what is wrong`.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Mapping

from torchdev.errors import ConfigError, UsageError
from torchdev.platforms import AMD64, Platform
from torchdev.yamlsource import Origin, SourcedDict, deep_merge, key_origins, load_yaml

DEFAULT_INDEX = "default"
"""An `index` of "default" means pip's own default index (or PIP_INDEX_URL on the build host's side)."""

COMPANIONS = {"2.0.0": ("0.15.1", "2.0.1"), "2.0.1": ("0.15.2", "2.0.2")}
"""torch release -> (torchvision, torchaudio) built against it; other pairs fail at import time."""

PLACEHOLDERS = ("variant", "torch", "torch_minor", "python", "cuda", "date", "git_sha", "inputs")

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?"
REPOSITORY_RE = re.compile(rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*$")
TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
IMAGE_REF_RE = re.compile(
    rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?(?:@sha256:[a-f0-9]{{64}})?$")
VARIANT_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
APT_SNAPSHOT_RE = re.compile(r"^\d{8}T\d{6}Z$")
APT_ARCHIVE_RE = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")
APT_SNAPSHOT_URL_RE = re.compile(r"^https?://[^\s#&\\]+$")
FLAVOUR_NAME_RE = re.compile(r"^[a-z][a-z0-9]*$")
DEBIAN_PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
PINNED_REQUIREMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9.+!-]+$")
CUDA_COMPONENT_RE = re.compile(r"^[a-z][a-z0-9_]*$")
PACKAGE_NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
RUNTIME = "runtime"
"""The default flavour, built from the variant's base: its tags carry no suffix; every other flavour builds on it."""


@dataclass(frozen=True)
class ImageSettings:
    """The top of images.yaml: where images go and how their tags read."""

    repository: str
    tag_templates: tuple[str, ...]
    pip_index: str
    packages: tuple[str, ...]
    apt_snapshot_urls: tuple[tuple[str, str], ...] = ()
    """(archive, URL template with {timestamp}): where a variant's apt_snapshot sends apt, per archive; an
    archive is the last part of a base's apt source URI (debian, debian-security, ubuntu)."""


@dataclass(frozen=True)
class Variant:
    """One row of the matrix: what to build and what the result must contain."""

    name: str
    base: str
    python: str
    torch: str
    torchvision: str
    torchaudio: str
    index: str
    cuda: str | None
    cudnn: int | None
    lock: str = ""  # the variant's lock file, relative to images.yaml; "" means locks/<name>.txt
    digest: str = ""  # the image digest a reproducible build must give; "" when none is recorded
    apt_snapshot: str = ""  # apt sees its archives as they were at this UTC time (YYYYMMDDTHHMMSSZ); "" means live
    platforms: tuple[Platform, ...] = (AMD64,)
    """What the variant can be built for; a build makes the engine's own one of them unless told otherwise."""

    @property
    def torch_minor(self) -> str:
        return ".".join(self.torch.split(".")[:2])

    @property
    def lock_path(self) -> str:
        return self.lock or f"locks/{self.name}.txt"

    def lock_path_for(self, platform: Platform) -> str:
        """linux/amd64's lock keeps the plain name (locks/cpu.txt); another platform's adds it: cpu.linux-arm64.txt."""
        if platform == AMD64:
            return self.lock_path
        stem, dot, suffix = self.lock_path.rpartition(".")
        return f"{stem}.{platform.slug}.{suffix}" if dot and "/" not in suffix else f"{self.lock_path}.{platform.slug}"


@dataclass(frozen=True)
class Flavour:
    """What is built on top of each variant's runtime image: `runtime` adds nothing; `devel` a toolchain."""

    name: str
    apt_packages: tuple[str, ...] = ()
    pip_packages: tuple[str, ...] = ()
    cuda_toolchain: str = ""
    """The folder of NVIDIA's redistributable archives nvcc and the CUDA headers come from; "" means none."""
    cuda_components: tuple[str, ...] = ()
    bases: tuple[tuple[str, str], ...] = ()
    """(variant, base) where this flavour is built on another base than the variant's."""
    lock_packages: tuple[str, ...] = ()
    """Packages of the variant's lock that this flavour installs and runtime leaves out (triton: runtime cannot
    use it), from the same lock with the same hashes."""

    @property
    def is_runtime(self) -> bool:
        return self.name == RUNTIME

    def base_for(self, variant: Variant) -> str:
        return dict(self.bases).get(variant.name, variant.base)


@dataclass(frozen=True)
class CudaRelease:
    """One CUDA version a variant may declare: the toolkit release devel's nvcc comes from, and the driver
    constraint (NVIDIA_REQUIRE_CUDA) that the matching nvidia/cuda image carries; a version without an entry
    gets the bare cuda>=X.Y."""

    version: str
    release: str
    nvidia_require_cuda: str


@dataclass(frozen=True)
class Matrix:
    """The validated matrix, the files it was read from (images.yaml, then the overlay if any), and where each of its
    keys was written, so nothing needs the raw YAML once it is parsed."""

    image: ImageSettings
    variants: tuple[Variant, ...]
    sources: tuple[Path, ...]
    flavours: tuple[Flavour, ...] = (Flavour(RUNTIME),)
    cuda_releases: tuple[CudaRelease, ...] = ()
    origins: Mapping[tuple[str, ...], Origin] = field(default_factory=dict, compare=False, repr=False)
    """Key path -> where it was written: ("variants", "cu117", "lock") -> overlays/x.yaml:12 (key_origins)."""

    @property
    def folder(self) -> Path:
        """images.yaml's folder, the checkout's root: a variant's lock path is relative to it."""
        return self.sources[0].parent

    @property
    def overlay(self) -> Path | None:
        """The overlay merged over images.yaml, None without one."""
        return self.sources[1] if len(self.sources) > 1 else None

    def origin(self, *path: str) -> Origin | None:
        """Where the key at `path` was written (file and line), None when neither file declares it."""
        return self.origins.get(path)

    def declared_by_overlay(self, *path: str) -> bool:
        """Whether the overlay, not images.yaml, declares the key at `path` (such as a variant's own lock)."""
        origin = self.origin(*path)
        return origin is not None and self.overlay is not None and origin.file == str(self.overlay)

    def lock_file(self, variant: Variant, platform: Platform = AMD64) -> Path:
        """Where the variant's lock for `platform` lives (Variant.lock_path_for), relative to images.yaml."""
        return self.folder / variant.lock_path_for(platform)

    def flavour(self, name: str) -> Flavour:
        for flavour in self.flavours:
            if flavour.name == name:
                return flavour
        raise UsageError(f"unknown flavour '{name}': the matrix declares {', '.join(f.name for f in self.flavours)}")

    def cuda_release(self, version: str | None) -> CudaRelease | None:
        return next((release for release in self.cuda_releases if release.version == version), None)

    def variant(self, name: str) -> Variant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        known = ", ".join(v.name for v in self.variants)
        names = [source.name if number == 0 else str(source) for number, source in enumerate(self.sources)]
        declared_by = " with the overlay ".join(names) or "the matrix"
        raise UsageError(f"unknown variant '{name}': {declared_by} declares {known}")


class _Problems:
    """Collects validation problems so one run reports all of them, each on its own line."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, mapping: SourcedDict, key: str | None, message: str, *, context: str = "") -> None:
        where = mapping.origin(key) if key is not None else mapping.where
        key_part = f"key '{key}': " if key is not None else ""
        self.lines.append(f"{where}: {context}{key_part}{message}")

    def raise_if_any(self) -> None:
        if self.lines:
            raise ConfigError("\n".join(self.lines))


def _check_keys(mapping: SourcedDict, *, required: set[str], optional: set[str], problems: _Problems,
                context: str = "") -> None:
    for key in mapping:
        if key not in required | optional:
            allowed = ", ".join(sorted(required | optional))
            problems.add(mapping, key, f"unknown key (allowed: {allowed})", context=context)
    for key in sorted(required - set(mapping)):
        problems.add(mapping, None, f"missing key '{key}'", context=context)


def _type_name(value: Any) -> str:
    return {type(None): "null", bool: "boolean", int: "integer", float: "number", str: "string",
            list: "list", SourcedDict: "mapping"}.get(type(value), type(value).__name__)


def _string(mapping: SourcedDict, key: str, problems: _Problems, *, context: str = "",
            pattern: re.Pattern[str] | None = None, hint: str = "") -> str:
    value = mapping.get(key)
    if not isinstance(value, str):
        quoted = f' (write it quoted: {key}: "{value}")' if isinstance(value, (int, float)) else ""
        problems.add(mapping, key, f"expected a string, got {_type_name(value)}{quoted}", context=context)
        return ""
    if pattern is not None and not pattern.match(value):
        problems.add(mapping, key, f"'{value}' is not {hint}", context=context)
    return value


def _index(mapping: SourcedDict, key: str, problems: _Problems, *, context: str = "") -> str:
    value = _string(mapping, key, problems, context=context)
    if value and value != DEFAULT_INDEX and not re.match(r"^(https?|file)://\S+$", value):
        problems.add(mapping, key, f"'{value}' is not a URL (http://, https://, file://) or '{DEFAULT_INDEX}'",
                     context=context)
    return value


def _read_image_settings(data: SourcedDict, problems: _Problems) -> ImageSettings:
    image = data.get("image")
    if not isinstance(image, SourcedDict):
        problems.add(data, "image", f"expected a mapping, got {_type_name(image)}")
        return ImageSettings("", (), DEFAULT_INDEX, ())
    _check_keys(image, required={"repository", "tags"}, optional=set(), problems=problems, context="image: ")
    repository = _string(image, "repository", problems, context="image: ", pattern=REPOSITORY_RE,
                         hint="a valid image repository name (lowercase, e.g. torchdev or registry:5000/team/torchdev)")
    templates = _string_list(image, "tags", problems, context="image: ", check=_template_problem)
    packages = _string_list(data, "packages", problems) if "packages" in data else ()
    pip_index = _index(data, "pip_index", problems) if "pip_index" in data else DEFAULT_INDEX
    snapshot_urls = _apt_snapshot_urls(data, problems) if "apt_snapshot_urls" in data else ()
    return ImageSettings(repository, templates, pip_index, packages, snapshot_urls)


def _apt_snapshot_urls(data: SourcedDict, problems: _Problems) -> tuple[tuple[str, str], ...]:
    """The archive -> snapshot URL table; `{timestamp}` in each URL takes the variant's apt_snapshot."""
    table = data.get("apt_snapshot_urls")
    if not isinstance(table, SourcedDict):
        problems.add(data, "apt_snapshot_urls", f"expected a mapping of archive: URL, got {_type_name(table)}")
        return ()
    for archive in table:
        if not APT_ARCHIVE_RE.match(str(archive)):
            problems.add(table, archive, "is not an apt archive name (the last part of a source URI, e.g. debian)",
                         context="apt_snapshot_urls: ")
        url = _string(table, archive, problems, context="apt_snapshot_urls: ", pattern=APT_SNAPSHOT_URL_RE,
                      hint="an http:// or https:// URL (without spaces, '#', '&' or '\\')")
        if url and re.findall(r"{([^{}]*)}", url) != ["timestamp"]:
            problems.add(table, archive, f"'{url}' must contain {{timestamp}} once and no other placeholder",
                         context="apt_snapshot_urls: ")
    return tuple((str(archive), url) for archive, url in table.items() if isinstance(url, str))


def _template_problem(template: str) -> str:
    """Why a tag template cannot produce valid tags, or ''."""
    names = re.findall(r"{([^{}]*)}", template)
    unknown = [name for name in names if name not in PLACEHOLDERS]
    if unknown:
        return f"unknown placeholder {{{unknown[0]}}} (known: {', '.join(PLACEHOLDERS)})"
    sample = re.sub(r"{[^{}]*}", "x1", template)
    return "" if TAG_RE.match(sample) else "does not give a valid Docker tag ([A-Za-z0-9_.-], at most 128)"


def _string_list(mapping: SourcedDict, key: str, problems: _Problems, *, context: str = "",
                 check: Callable[[str], str] | None = None) -> tuple[str, ...]:
    value = mapping.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(item, str) for item in value):
        problems.add(mapping, key, f"expected a non-empty list of strings, got {_type_name(value)}", context=context)
        return ()
    for item in value:
        problem = check(item) if check else ""
        if problem:
            problems.add(mapping, key, f"'{item}' {problem}", context=context)
    return tuple(value)


VARIANT_REQUIRED = {"base", "python", "torch", "torchvision", "torchaudio", "index", "cuda", "cudnn"}


def _read_variant(name: str, fields: Any, parent: SourcedDict, problems: _Problems) -> Variant | None:
    context = f"variant '{name}': "
    if not VARIANT_NAME_RE.match(str(name)):
        problems.add(parent, name, "variant names are lowercase letters, digits, '.', '_' and '-'",
                     context=context)
    if not isinstance(fields, SourcedDict):
        problems.add(parent, name, f"expected a mapping of fields, got {_type_name(fields)}", context=context)
        return None
    _check_keys(fields, required=VARIANT_REQUIRED, optional={"lock", "digest", "apt_snapshot", "platforms"},
                problems=problems, context=context)
    if VARIANT_REQUIRED - set(fields):
        return None
    text = {key: _string(fields, key, problems, context=context) for key in ("torchvision", "torchaudio")}
    variant = Variant(
        name=str(name),
        base=_string(fields, "base", problems, context=context, pattern=IMAGE_REF_RE,
                     hint="a valid image reference (name[:tag][@sha256:digest])"),
        python=_string(fields, "python", problems, context=context, pattern=re.compile(r"^3\.\d+$"),
                       hint="a Python version like \"3.10\""),
        torch=_string(fields, "torch", problems, context=context, pattern=re.compile(r"^2\.0\.\d+$"),
                      hint="a PyTorch 2.0 release (2.0.x): torchdev images are PyTorch 2.0"),
        index=_index(fields, "index", problems, context=context),
        cuda=_cuda(fields, problems, context),
        cudnn=_cudnn(fields, problems, context),
        lock=_string(fields, "lock", problems, context=context) if "lock" in fields else "",
        digest=_string(fields, "digest", problems, context=context, pattern=re.compile(r"^sha256:[0-9a-f]{64}$"),
                       hint="an image digest (sha256:<64 hex digits>)") if "digest" in fields else "",
        apt_snapshot=_apt_snapshot(fields, problems, context),
        platforms=_platforms(fields, problems, context),
        **text,
    )
    _check_companions(variant, fields, problems, context)
    return variant


def _cuda(fields: SourcedDict, problems: _Problems, context: str) -> str | None:
    if fields.get("cuda") is None:
        return None
    return _string(fields, "cuda", problems, context=context, pattern=re.compile(r"^\d+\.\d+$"),
                   hint="a CUDA version as torch.version.cuda reports it (e.g. \"11.8\"), or null for a CPU build")


def _cudnn(fields: SourcedDict, problems: _Problems, context: str) -> int | None:
    value, cuda = fields.get("cudnn"), fields.get("cuda")
    if cuda is None and value is not None:
        problems.add(fields, "cudnn", "must be null when cuda is null (a CPU build has no cuDNN)", context=context)
    elif cuda is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        problems.add(fields, "cudnn", f"expected the cuDNN major version as an integer, got {_type_name(value)}",
                     context=context)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _platforms(fields: SourcedDict, problems: _Problems, context: str) -> tuple[Platform, ...]:
    """linux/amd64 unless the variant lists others; torch 2.0's aarch64 wheels are CPU builds, so CUDA is amd64 only."""
    if "platforms" not in fields:
        return (AMD64,)
    names = _string_list(fields, "platforms", problems, context=context)
    platforms = []
    for name in names:
        try:
            platforms.append(Platform.parse(name))
        except UsageError as error:
            problems.add(fields, "platforms", str(error), context=context)
    foreign = [str(platform) for platform in platforms if platform != AMD64]
    if foreign and fields.get("cuda") is not None:
        problems.add(fields, "platforms", f"{foreign[0]} cannot have CUDA: torch 2.0 publishes CUDA wheels for "
                     f"{AMD64} only; keep CUDA variants on {AMD64} and build cpu for {foreign[0]}", context=context)
    return tuple(dict.fromkeys(platforms)) or (AMD64,)


def _apt_snapshot(fields: SourcedDict, problems: _Problems, context: str) -> str:
    if fields.get("apt_snapshot") is None:
        return ""
    value = _string(fields, "apt_snapshot", problems, context=context, pattern=APT_SNAPSHOT_RE,
                    hint='a UTC time written YYYYMMDDTHHMMSSZ (e.g. "20261101T000000Z"), or null')
    if APT_SNAPSHOT_RE.match(value):
        try:
            datetime.strptime(value, "%Y%m%dT%H%M%SZ")
        except ValueError:
            problems.add(fields, "apt_snapshot", f"'{value}' is not a real date and time", context=context)
    return value


def _check_snapshot_archives(matrix_data: SourcedDict, image: ImageSettings, variants: list[Variant],
                             problems: _Problems) -> None:
    """A variant with an apt snapshot needs somewhere to send apt: at least one apt_snapshot_urls entry."""
    if image.apt_snapshot_urls:
        return
    for variant in variants:
        if variant.apt_snapshot:
            problems.add(matrix_data, None, f"variant '{variant.name}' sets apt_snapshot but there is no "
                         "apt_snapshot_urls table: add one, or set apt_snapshot: null")


def _check_companions(variant: Variant, fields: SourcedDict, problems: _Problems, context: str) -> None:
    expected = COMPANIONS.get(variant.torch)
    if expected is None:
        return
    for key, want in zip(("torchvision", "torchaudio"), expected):
        got = getattr(variant, key)
        if got and got != want:
            problems.add(fields, key, f"{got} is not built for torch {variant.torch}; use {want}", context=context)


def _read_cuda_releases(data: SourcedDict, problems: _Problems) -> tuple[CudaRelease, ...]:
    table = data.get("cuda_releases")
    if table is None:
        return ()
    if not isinstance(table, SourcedDict):
        problems.add(data, "cuda_releases", f"expected a mapping of CUDA version: release, got {_type_name(table)}")
        return ()
    releases = []
    for version, fields in table.items():
        context = f"cuda_releases: '{version}': "
        if not re.match(r"^\d+\.\d+$", str(version)):
            problems.add(table, version, 'is not a CUDA version like "11.8" (write it quoted)',
                         context="cuda_releases: ")
            continue
        if not isinstance(fields, SourcedDict):
            problems.add(table, version, f"expected a mapping, got {_type_name(fields)}", context="cuda_releases: ")
            continue
        _check_keys(fields, required={"release", "nvidia_require_cuda"}, optional=set(), problems=problems,
                    context=context)
        release = _string(fields, "release", problems, context=context,
                          pattern=re.compile(rf"^{re.escape(str(version))}\.\d+$"),
                          hint=f"a release of CUDA {version} (e.g. {version}.0)") if "release" in fields else ""
        require = _string(fields, "nvidia_require_cuda", problems, context=context,
                          pattern=re.compile(rf"^cuda>={re.escape(str(version))}( |$)"),
                          hint=f"a constraint that starts with cuda>={version}, as nvidia/cuda images carry it"
                          ) if "nvidia_require_cuda" in fields else ""
        releases.append(CudaRelease(str(version), release, require))
    return tuple(releases)


def _read_flavours(data: SourcedDict, variant_names: set[str], problems: _Problems) -> tuple[Flavour, ...]:
    table = data.get("flavours")
    if table is None:
        return (Flavour(RUNTIME),)
    if not isinstance(table, SourcedDict) or RUNTIME not in table:
        problems.add(data, "flavours", f"expected a mapping of flavours that includes '{RUNTIME}' (the default)")
        return (Flavour(RUNTIME),)
    flavours = [_read_flavour(str(name), fields, table, variant_names, problems) for name, fields in table.items()]
    runtime = [flavour for flavour in flavours if flavour.is_runtime]
    return tuple(runtime + [flavour for flavour in flavours if not flavour.is_runtime])


def _read_flavour(name: str, fields: Any, table: SourcedDict, variant_names: set[str],
                  problems: _Problems) -> Flavour:
    context = f"flavour '{name}': "
    if not FLAVOUR_NAME_RE.match(name):
        problems.add(table, name, "flavour names are lowercase letters and digits (they end tags: cu118-devel)",
                     context=context)
    if fields is None:
        fields = SourcedDict({}, where=table.origin(name))
    if not isinstance(fields, SourcedDict):
        problems.add(table, name, f"expected a mapping, got {_type_name(fields)}", context=context)
        return Flavour(name)
    toolchain_keys = {"apt_packages", "pip_packages", "cuda_toolchain", "cuda_components", "lock_packages"}
    _check_keys(fields, required=set(), optional={"bases"} | (set() if name == RUNTIME else toolchain_keys),
                problems=problems, context=context)
    lists = {key: _string_list(fields, key, problems, context=context, check=check) if key in fields else ()
             for key, check in (("apt_packages", _debian_package_problem), ("pip_packages", _pinned_problem),
                                ("cuda_components", _component_problem), ("lock_packages", _package_problem))}
    toolchain = "" if fields.get("cuda_toolchain") is None else _string(
        fields, "cuda_toolchain", problems, context=context, pattern=re.compile(r"^(https?|file)://\S+$"),
        hint="the URL of NVIDIA's redist folder (https://developer.download.nvidia.com/compute/cuda/redist), or null")
    if toolchain and "cuda_nvcc" not in lists["cuda_components"]:
        problems.add(fields, "cuda_toolchain", "needs cuda_components that include cuda_nvcc", context=context)
    return Flavour(name, lists["apt_packages"], lists["pip_packages"], toolchain, lists["cuda_components"],
                   _flavour_bases(fields, variant_names, problems, context), lists["lock_packages"])


def _flavour_bases(fields: SourcedDict, variant_names: set[str], problems: _Problems,
                   context: str) -> tuple[tuple[str, str], ...]:
    bases = fields.get("bases")
    if bases is None:
        return ()
    if not isinstance(bases, SourcedDict):
        problems.add(fields, "bases", f"expected a mapping of variant: base image, got {_type_name(bases)}",
                     context=context)
        return ()
    for variant in bases:
        if variant not in variant_names:
            problems.add(bases, variant, f"is not a variant (known: {', '.join(sorted(variant_names))})",
                         context=context + "bases: ")
        _string(bases, variant, problems, context=context + "bases: ", pattern=IMAGE_REF_RE,
                hint="a valid image reference (name[:tag][@sha256:digest])")
    return tuple((str(variant), base) for variant, base in bases.items() if isinstance(base, str))


def _debian_package_problem(name: str) -> str:
    return "" if DEBIAN_PACKAGE_RE.match(name) else "is not a Debian package name"


def _pinned_problem(requirement: str) -> str:
    return "" if PINNED_REQUIREMENT_RE.match(requirement) else "is not pinned as name==version"


def _package_problem(name: str) -> str:
    return "" if PACKAGE_NAME_RE.match(name) else "is not a Python package name (as the lock names it: triton)"


def _component_problem(name: str) -> str:
    return "" if CUDA_COMPONENT_RE.match(name) else "is not a component of NVIDIA's redist (e.g. cuda_nvcc)"


def _check_cuda_releases(data: SourcedDict, variants: list[Variant], releases: tuple[CudaRelease, ...],
                         flavours: tuple[Flavour, ...], problems: _Problems) -> None:
    """A flavour with a CUDA toolchain needs each CUDA variant's release to know which nvcc to fetch."""
    known = {release.version for release in releases}
    needing = [flavour.name for flavour in flavours if flavour.cuda_toolchain]
    for variant in variants:
        if needing and variant.cuda and variant.cuda not in known:
            problems.add(data["variants"][variant.name], "cuda",
                         f"CUDA {variant.cuda} has no entry in cuda_releases, which flavour '{needing[0]}' needs for "
                         "its nvcc: add the release and its NVIDIA_REQUIRE_CUDA", context=f"variant '{variant.name}': ")


def parse_matrix(data: SourcedDict, *, sources: tuple[Path, ...]) -> Matrix:
    """Validate merged YAML data into a Matrix, or raise one ConfigError listing every problem."""
    problems = _Problems()
    _check_keys(data, required={"image", "variants"},
                optional={"pip_index", "packages", "apt_snapshot_urls", "flavours", "cuda_releases"},
                problems=problems)
    image = _read_image_settings(data, problems)
    raw_variants = data.get("variants")
    variants: list[Variant] = []
    if not isinstance(raw_variants, SourcedDict) or not raw_variants:
        problems.add(data, "variants", f"expected a non-empty mapping of variants, got {_type_name(raw_variants)}")
    else:
        for name, fields in raw_variants.items():
            variant = _read_variant(name, fields, raw_variants, problems)
            if variant is not None:
                variants.append(variant)
    _check_snapshot_archives(data, image, variants, problems)
    releases = _read_cuda_releases(data, problems)
    flavours = _read_flavours(data, {variant.name for variant in variants}, problems)
    _check_cuda_releases(data, variants, releases, flavours, problems)
    problems.raise_if_any()
    return Matrix(image=image, variants=tuple(variants), sources=sources, flavours=flavours, cuda_releases=releases,
                  origins=key_origins(data))


def overlay_path(*, matrix_path: Path, explicit: str | None, environ: Mapping[str, str] | None = None) -> Path | None:
    """The overlay to apply: --overlay, else $TORCHDEV_OVERLAY (in `environ`, by default this process's), else
    images.local.yaml when it exists."""
    chosen = explicit or (os.environ if environ is None else environ).get("TORCHDEV_OVERLAY")
    if chosen:
        path = Path(chosen)
        if not path.is_file():
            raise ConfigError(f"{path}: overlay file not found (from --overlay or TORCHDEV_OVERLAY)")
        return path
    local = matrix_path.with_name("images.local.yaml")
    return local if local.is_file() else None


def load_sources(matrix_path: Path, *, overlay: str | None = None,
                 environ: Mapping[str, str] | None = None) -> tuple[SourcedDict, tuple[Path, ...]]:
    """images.yaml with the overlay deep-merged over it, each key still knowing its file and line."""
    data = load_yaml(matrix_path)
    extra = overlay_path(matrix_path=matrix_path, explicit=overlay, environ=environ)
    if extra is None:
        return data, (matrix_path,)
    return deep_merge(data, load_yaml(extra)), (matrix_path, extra)


def load_matrix(matrix_path: Path, *, overlay: str | None = None, environ: Mapping[str, str] | None = None) -> Matrix:
    """Read images.yaml, deep-merge the overlay over it, and validate the result."""
    data, sources = load_sources(matrix_path, overlay=overlay, environ=environ)
    return parse_matrix(data, sources=sources)
