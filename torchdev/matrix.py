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

from torchdev.errors import CONFIGURATION, USAGE, ConfigError, Problem, TorchdevError, UsageError, joined
from torchdev.files import input_file
from torchdev.grammar import (TAG_RE, reference_problem, repository_problem, requirement_problem, tag_problem,
                              url_problem, version_problem)
from torchdev.platforms import AMD64, KNOWN, Platform
from torchdev.yamlsource import Origin, SourcedDict, SourcedList, deep_merge, key_origins, load_yaml, yaml_kind

DEFAULT_INDEX = "default"
"""An `index` of "default" means pip's own default index (or PIP_INDEX_URL on the build host's side)."""

COMPANIONS = {"2.0.0": ("0.15.1", "2.0.1"), "2.0.1": ("0.15.2", "2.0.2")}
"""torch release -> (torchvision, torchaudio) built against it; other pairs fail at import time."""

PLACEHOLDERS = ("variant", "torch", "torch_minor", "python", "cuda", "date", "git_sha", "inputs")

VARIANT_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
APT_SNAPSHOT_RE = re.compile(r"^\d{8}T\d{6}Z$")
APT_ARCHIVE_RE = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")
APT_SNAPSHOT_URL_RE = re.compile(r"^https?://[^\s#&\\]+$")
FLAVOUR_NAME_RE = re.compile(r"^[a-z][a-z0-9]*$")
FLAVOUR_NAME_MAX = 20
DEBIAN_PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
CUDA_COMPONENT_RE = re.compile(r"^[a-z][a-z0-9_]*$")
PACKAGE_NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
RUNTIME = "runtime"
UNKNOWN_VARIANT = Problem("unknown variant '{name}'", "{declared_by} declares {known}", UsageError, USAGE)
UNKNOWN_FLAVOUR = Problem("unknown flavour '{name}'", "the matrix declares {known}", UsageError, USAGE)
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
        raise UNKNOWN_FLAVOUR(name=name, known=", ".join(f.name for f in self.flavours))

    def cuda_release(self, version: str | None) -> CudaRelease | None:
        return next((release for release in self.cuda_releases if release.version == version), None)

    def variant(self, name: str) -> Variant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        known = ", ".join(v.name for v in self.variants)
        names = [source.name if number == 0 else str(source) for number, source in enumerate(self.sources)]
        declared_by = " with the overlay ".join(names) or "the matrix"
        raise UNKNOWN_VARIANT(name=name, declared_by=declared_by, known=known)


class _Problems:
    """Collects validation problems so one run reports all of them, each on its own line:
    `file:line: [variant 'x': ]key 'y': <the problem's cause>: <its fix>`."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, mapping: SourcedDict, key: str | None, problem: Problem, *, context: str = "",
            where: Origin | None = None, **values: object) -> None:
        where = where or (mapping.origin(key) if key is not None else mapping.where)
        key_part = f"key '{key}': " if key is not None else ""
        self.lines.append(f"{where}: {context}{key_part}{problem.line(key=key, **values)}")

    def raise_if_any(self) -> None:
        if self.lines:
            raise joined(self.lines)


def _c(cause: str, fix: str) -> Problem:
    return Problem(cause, fix, ConfigError, CONFIGURATION)


UNKNOWN_KEY = Problem("unknown key", "the keys allowed here are {allowed}", ConfigError, CONFIGURATION)
MISSING_KEY = Problem("missing key '{name}'", "add it", ConfigError, CONFIGURATION)
NOT_TEXT = Problem("expected a string, got {kind}", "{hint}", ConfigError, CONFIGURATION)
NOT_VALID = Problem("'{value}' is not {what}", "{fix}", ConfigError, CONFIGURATION)
BAD_ITEM = Problem("'{value}' {reason}", "{fix}", ConfigError, CONFIGURATION)
NOT_A_LIST = Problem("expected a non-empty list of strings, got {kind}", "write [a, b], or one `- item` per line",
                     ConfigError, CONFIGURATION)
ITEM_IS_A_MAPPING = Problem("item {index} ({raw}) is read by YAML as a mapping, not as text",
                            "the ': ' makes it one: write {instead}", ConfigError, CONFIGURATION)
ITEM_NOT_TEXT = Problem("item {index} is {kind}, not text", "write it quoted: - \"{raw}\"", ConfigError,
                        CONFIGURATION)
NOT_A_MAPPING = Problem("expected {what}, got {kind}", "{fix}", ConfigError, CONFIGURATION)
VARIANT_NAME = Problem("'{value}' is not a variant name", "use at most {limit} lower-case letters, digits and '-', "
                       "starting and ending with a letter or digit: the name ends up in tags, file names and the "
                       "Kubernetes job name torchdev-<variant>", ConfigError, CONFIGURATION)
NOT_TORCH_2_0 = Problem("'{value}' is not a PyTorch 2.0 release (torchdev images are PyTorch 2.0)",
                        "use one of {releases}", ConfigError, CONFIGURATION)
NOT_A_COMPANION = Problem("{got} is not built for torch {torch}", "use {want}", ConfigError, CONFIGURATION)
NOT_A_WHEEL_PYTHON = Problem("'{value}' is not a Python that torch 2.0 publishes wheels for",
                             'use one of {pythons}, written quoted ("3.10")', ConfigError, CONFIGURATION)
NOT_A_TORCH_CUDA = Problem("'{value}' is not a CUDA version that torch 2.0 is built for",
                           'use one of {versions}, quoted ("11.8"), or null for a CPU build', ConfigError,
                           CONFIGURATION)
BAD_CUDNN = Problem("expected the cuDNN major version torch 2.0's CUDA wheels bring, got {kind}",
                    "write cudnn: {major}", ConfigError, CONFIGURATION)
CUDNN_WITHOUT_CUDA = Problem("must be null when cuda is null (a CPU build has no cuDNN)", "write cudnn: null",
                             ConfigError, CONFIGURATION)
NO_SNAPSHOT_URLS = Problem("variant '{variant}' sets apt_snapshot but there is no apt_snapshot_urls table",
                           "add one, or set apt_snapshot: null", ConfigError, CONFIGURATION)
NOT_A_DATE = Problem("'{value}' is not a real date and time", 'write one as YYYYMMDDTHHMMSSZ ("20261101T000000Z")',
                     ConfigError, CONFIGURATION)
TIMESTAMP_ONCE = Problem("'{value}' must contain {{timestamp}} once and no other placeholder",
                         "write the snapshot URL with {{timestamp}} where the time goes", ConfigError, CONFIGURATION)
TAG_TOO_BAD = Problem("'{template}' gives the tag '{tag}' for {image}, which is not {what}",
                      "shorten the template or the variant's values", ConfigError, CONFIGURATION)
CUDA_OFF_AMD64 = Problem("{platform} cannot have CUDA: torch 2.0 publishes CUDA wheels for {amd64} only",
                         "keep CUDA variants on {amd64} and build cpu for {platform}", ConfigError, CONFIGURATION)
NEEDS_NVCC = Problem("needs cuda_components that include cuda_nvcc", "add cuda_nvcc, or set cuda_toolchain: null",
                     ConfigError, CONFIGURATION)
NO_CUDA_RELEASE = Problem("CUDA {cuda} has no entry in cuda_releases, which flavour '{flavour}' needs for its nvcc",
                          "add the release and its NVIDIA_REQUIRE_CUDA", ConfigError, CONFIGURATION)
NOT_A_VARIANT = Problem("is not a variant (known: {known})", "name one of them", ConfigError, CONFIGURATION)
NO_RUNTIME_FLAVOUR = Problem("expected a mapping of flavours that includes '{runtime}' (the default)",
                             "add `{runtime}: {{}}`", ConfigError, CONFIGURATION)
EMPTY_OVERLAY = Problem("{source} is empty", "name the overlay file, or leave it out", UsageError, USAGE)
NO_OVERLAY = Problem("{path}: overlay file not found (from --overlay or TORCHDEV_OVERLAY)",
                     "check the path, or unset TORCHDEV_OVERLAY", ConfigError, CONFIGURATION)
BAD_LOCK_PATH = Problem("{path} ({role}) {reason}", "{fix}", ConfigError, CONFIGURATION)

RELEASES = tuple(COMPANIONS)
PYTHONS = ("3.8", "3.9", "3.10", "3.11")
"""The CPython versions torch 2.0.0 and 2.0.1 publish Linux wheels for."""
TORCH_CUDA = ("11.7", "11.8")
"""The CUDA versions torch 2.0's Linux wheels are built for (PyPI's default is 11.7)."""
CUDNN_MAJOR = 8
"""The cuDNN major version torch 2.0's CUDA wheels bring (nvidia-cudnn-cu11 8.x, or bundled)."""
VARIANT_NAME_MAX = 31
"""`./dev k8s` names a job torchdev-<variant>, and a job's name may have 40 characters (torchdev.k8s.NAME_MAX)."""
SAMPLE_STAMP = {"date": "20991231", "git_sha": "0123456-dirty", "inputs": "01234567"}
"""The longest values a build stamp gives the tag placeholders, to check every tag a template can produce."""


def _check_keys(mapping: SourcedDict, *, required: set[str], optional: set[str], problems: _Problems,
                context: str = "") -> None:
    for key in mapping:
        if key not in required | optional:
            problems.add(mapping, key, UNKNOWN_KEY, context=context, allowed=", ".join(sorted(required | optional)))
    for key in sorted(required - set(mapping)):
        problems.add(mapping, None, MISSING_KEY, context=context, name=key)


def _type_name(value: Any) -> str:
    return yaml_kind(value)


def _quoted_hint(mapping: SourcedDict, key: str, value: Any) -> str:
    raw = mapping.raw.get(key)
    if raw is not None:
        return f'write it quoted: {key}: "{raw}"'
    return f'write text: {key}: "..."'


def _string(mapping: SourcedDict, key: str, problems: _Problems, *, context: str = "",
            pattern: re.Pattern[str] | None = None, hint: str = "", check: Callable[[str], str] | None = None,
            fix: str = "") -> str:
    value = mapping.get(key)
    if not isinstance(value, str):
        problems.add(mapping, key, NOT_TEXT, context=context, kind=_type_name(value),
                     hint=_quoted_hint(mapping, key, value))
        return ""
    if pattern is not None and not pattern.match(value):
        problems.add(mapping, key, NOT_VALID, context=context, value=value, what=hint,
                     fix=fix or "correct the value")
    elif check is not None and check(value):
        problems.add(mapping, key, NOT_VALID, context=context, value=value, what=check(value),
                     fix=fix or "correct the value")
    return value


def _index_problem(value: str) -> str:
    if value == DEFAULT_INDEX:
        return ""
    problem = url_problem(value, schemes=("http", "https", "file"))
    return f"{problem} or '{DEFAULT_INDEX}'" if problem else ""


def _index(mapping: SourcedDict, key: str, problems: _Problems, *, context: str = "") -> str:
    return _string(mapping, key, problems, context=context, check=_index_problem,
                   fix=f"write the index's URL (http://, https://, file://), or {DEFAULT_INDEX} for pip's own")


def _read_image_settings(data: SourcedDict, problems: _Problems) -> ImageSettings:
    image = data.get("image")
    if not isinstance(image, SourcedDict):
        problems.add(data, "image", NOT_A_MAPPING, what="a mapping", kind=_type_name(image),
                     fix="write image: with repository: and tags: under it")
        return ImageSettings("", (), DEFAULT_INDEX, ())
    _check_keys(image, required={"repository", "tags"}, optional=set(), problems=problems, context="image: ")
    repository = _string(image, "repository", problems, context="image: ", check=repository_problem,
                         fix="write a name such as torchdev or registry:5000/team/torchdev") \
        if "repository" in image else ""
    templates = _string_list(image, "tags", problems, context="image: ", check=_template_problem,
                             fix=f"use the placeholders {', '.join(PLACEHOLDERS)} and tag characters only") \
        if "tags" in image else ()
    packages = _string_list(data, "packages", problems, check=_requirement_problem,
                            fix="write name==version, one requirement per item") if "packages" in data else ()
    pip_index = _index(data, "pip_index", problems) if "pip_index" in data else DEFAULT_INDEX
    snapshot_urls = _apt_snapshot_urls(data, problems) if "apt_snapshot_urls" in data else ()
    return ImageSettings(repository, templates, pip_index, packages, snapshot_urls)


def _snapshot_url_problem(url: str) -> str:
    problem = url_problem(url.replace("{timestamp}", "20261101T000000Z"))
    return "an http:// or https:// URL without spaces, quotes, '#', '&' or '\\'" \
        if problem or not APT_SNAPSHOT_URL_RE.match(url) else ""


def _apt_snapshot_urls(data: SourcedDict, problems: _Problems) -> tuple[tuple[str, str], ...]:
    """The archive -> snapshot URL table; `{timestamp}` in each URL takes the variant's apt_snapshot."""
    table = data.get("apt_snapshot_urls")
    if not isinstance(table, SourcedDict):
        problems.add(data, "apt_snapshot_urls", NOT_A_MAPPING, what="a mapping of archive: URL",
                     kind=_type_name(table), fix="write one `archive: URL` line per archive under it")
        return ()
    for archive in table:
        if not APT_ARCHIVE_RE.match(str(archive)):
            problems.add(table, archive, NOT_VALID, context="apt_snapshot_urls: ", value=archive,
                         what="an apt archive name (the last part of a source URI, e.g. debian)",
                         fix="name the archive as the base's apt sources do")
        url = _string(table, archive, problems, context="apt_snapshot_urls: ", check=_snapshot_url_problem,
                      fix="write the snapshot service's http:// or https:// URL with {timestamp}")
        if url and re.findall(r"{([^{}]*)}", url) != ["timestamp"]:
            problems.add(table, archive, TIMESTAMP_ONCE, context="apt_snapshot_urls: ", value=url)
    return tuple((str(archive), url) for archive, url in table.items() if isinstance(url, str))


def _template_problem(template: str) -> str:
    """Why a tag template cannot produce valid tags, or ''."""
    names = re.findall(r"{([^{}]*)}", template)
    unknown = [name for name in names if name not in PLACEHOLDERS]
    if unknown:
        return f"has the unknown placeholder {{{unknown[0]}}}"
    sample = re.sub(r"{[^{}]*}", "x1", template)
    return "" if TAG_RE.match(sample) and "{" not in sample and "}" not in sample else \
        "does not give a valid Docker tag ([A-Za-z0-9_.-], at most 128)"


def _item_hint(item: Any, raw: str | None) -> tuple[Problem, dict[str, object]]:
    """What to say of a list item that is not text: a mapping `- numpy: 1.26` was meant as `- numpy==1.26`."""
    if isinstance(item, dict):
        shown = ", ".join(f"{key}: {value}" for key, value in item.items())
        first = next(iter(item.items()), ("", ""))
        instead = (f"- {first[0]}=={first[1]} for a requirement, or quote it: - \"{shown}\""
                   if len(item) == 1 else f'- "{shown}"')
        return ITEM_IS_A_MAPPING, {"raw": shown, "instead": instead}
    return ITEM_NOT_TEXT, {"kind": _type_name(item), "raw": raw if raw is not None else item}


def _string_list(mapping: SourcedDict, key: str, problems: _Problems, *, context: str = "",
                 check: Callable[[str], str] | None = None, fix: str = "correct the item") -> tuple[str, ...]:
    """A non-empty list of text, each item passing `check` (which says why one does not, starting with a verb:
    "is not a Debian package name")."""
    value = mapping.get(key)
    if not isinstance(value, list) or not value:
        problems.add(mapping, key, NOT_A_LIST, context=context,
                     kind="an empty list" if isinstance(value, list) else _type_name(value))
        return ()
    good = True
    for index, item in enumerate(value):
        where = value.origin(index) if isinstance(value, SourcedList) else None
        if not isinstance(item, str):
            raw = value.raw[index] if isinstance(value, SourcedList) and index < len(value.raw) else None
            problem, fields = _item_hint(item, raw)
            problems.add(mapping, key, problem, context=context, where=where, index=index + 1, **fields)
            good = False
            continue
        reason = check(item) if check else ""
        if reason:
            problems.add(mapping, key, BAD_ITEM, context=context, where=where, value=item, reason=reason,
                         fix=fix)
    return tuple(value) if good else ()


VARIANT_REQUIRED = {"base", "python", "torch", "torchvision", "torchaudio", "index", "cuda", "cudnn"}


def _variant_name_problem(name: str) -> str:
    return "" if VARIANT_NAME_RE.match(name) and len(name) <= VARIANT_NAME_MAX else "bad"


def _read_variant(name: str, fields: Any, parent: SourcedDict, problems: _Problems) -> Variant | None:
    context = f"variant '{name}': "
    if _variant_name_problem(str(name)):
        problems.add(parent, name, VARIANT_NAME, context=context, value=name, limit=VARIANT_NAME_MAX)
    if not isinstance(fields, SourcedDict):
        problems.add(parent, name, NOT_A_MAPPING, context=context, what="a mapping of fields",
                     kind=_type_name(fields), fix=f"write the variant's {', '.join(sorted(VARIANT_REQUIRED))} under it")
        return None
    _check_keys(fields, required=VARIANT_REQUIRED, optional={"lock", "digest", "apt_snapshot", "platforms"},
                problems=problems, context=context)
    if VARIANT_REQUIRED - set(fields):
        return None
    text = {key: _string(fields, key, problems, context=context, check=version_problem,
                         fix=f"write the {key} release that goes with torch") for key in ("torchvision", "torchaudio")}
    variant = Variant(
        name=str(name),
        base=_string(fields, "base", problems, context=context, check=reference_problem,
                     fix="write name[:tag][@sha256:digest], e.g. ubuntu:22.04"),
        python=_python(fields, problems, context),
        torch=_torch(fields, problems, context),
        index=_index(fields, "index", problems, context=context),
        cuda=_cuda(fields, problems, context),
        cudnn=_cudnn(fields, problems, context),
        lock=_string(fields, "lock", problems, context=context, check=_lock_path_problem,
                     fix="write the lock's path relative to images.yaml") if "lock" in fields else "",
        digest=_string(fields, "digest", problems, context=context, pattern=re.compile(r"^sha256:[0-9a-f]{64}$"),
                       hint="an image digest (sha256:<64 hex digits>)",
                       fix="copy the digest `./dev verify-repro` prints") if "digest" in fields else "",
        apt_snapshot=_apt_snapshot(fields, problems, context),
        platforms=_platforms(fields, problems, context),
        **text,
    )
    _check_companions(variant, fields, problems, context)
    return variant


def _lock_path_problem(path: str) -> str:
    if not path.strip() or "\0" in path or path.endswith("/"):
        return "a path to a lock file"
    return ""


def _python(fields: SourcedDict, problems: _Problems, context: str) -> str:
    value = _string(fields, "python", problems, context=context)
    if value and value not in PYTHONS:
        problems.add(fields, "python", NOT_A_WHEEL_PYTHON, context=context, value=value, pythons=", ".join(PYTHONS))
    return value


def _torch(fields: SourcedDict, problems: _Problems, context: str) -> str:
    value = _string(fields, "torch", problems, context=context)
    if value and value not in RELEASES:
        problems.add(fields, "torch", NOT_TORCH_2_0, context=context, value=value, releases=", ".join(RELEASES))
    return value


def _cuda(fields: SourcedDict, problems: _Problems, context: str) -> str | None:
    if fields.get("cuda") is None:
        return None
    value = _string(fields, "cuda", problems, context=context)
    if value and value not in TORCH_CUDA:
        problems.add(fields, "cuda", NOT_A_TORCH_CUDA, context=context, value=value, versions=", ".join(TORCH_CUDA))
    return value


def _cudnn(fields: SourcedDict, problems: _Problems, context: str) -> int | None:
    value, cuda = fields.get("cudnn"), fields.get("cuda")
    if cuda is None and value is not None:
        problems.add(fields, "cudnn", CUDNN_WITHOUT_CUDA, context=context)
    elif cuda is not None and (not isinstance(value, int) or isinstance(value, bool) or value != CUDNN_MAJOR):
        kind = f"{value}" if isinstance(value, int) and not isinstance(value, bool) else _type_name(value)
        problems.add(fields, "cudnn", BAD_CUDNN, context=context, kind=kind, major=CUDNN_MAJOR)
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
            problems.add(fields, "platforms", NOT_VALID, context=context, value=name,
                         what="a platform torch 2.0 has wheels for", fix=f"list {' and/or '.join(map(str, KNOWN))}")
    foreign = [str(platform) for platform in platforms if platform != AMD64]
    if foreign and fields.get("cuda") is not None:
        problems.add(fields, "platforms", CUDA_OFF_AMD64, context=context, platform=foreign[0], amd64=AMD64)
    return tuple(dict.fromkeys(platforms)) or (AMD64,)


def _apt_snapshot(fields: SourcedDict, problems: _Problems, context: str) -> str:
    if fields.get("apt_snapshot") is None:
        return ""
    value = _string(fields, "apt_snapshot", problems, context=context, pattern=APT_SNAPSHOT_RE,
                    hint='a UTC time written YYYYMMDDTHHMMSSZ (e.g. "20261101T000000Z")',
                    fix="write it so, quoted, or null for the live archives")
    if APT_SNAPSHOT_RE.match(value):
        try:
            datetime.strptime(value, "%Y%m%dT%H%M%SZ")
        except ValueError:
            problems.add(fields, "apt_snapshot", NOT_A_DATE, context=context, value=value)
    return value


def _check_snapshot_archives(matrix_data: SourcedDict, image: ImageSettings, variants: list[Variant],
                             problems: _Problems) -> None:
    """A variant with an apt snapshot needs somewhere to send apt: at least one apt_snapshot_urls entry."""
    if image.apt_snapshot_urls:
        return
    for variant in variants:
        if variant.apt_snapshot:
            problems.add(matrix_data, None, NO_SNAPSHOT_URLS, variant=variant.name)


def _check_companions(variant: Variant, fields: SourcedDict, problems: _Problems, context: str) -> None:
    expected = COMPANIONS.get(variant.torch)
    if expected is None:
        return
    for key, want in zip(("torchvision", "torchaudio"), expected):
        got = getattr(variant, key)
        if got and got != want:
            problems.add(fields, key, NOT_A_COMPANION, context=context, got=got, torch=variant.torch, want=want)


def _read_cuda_releases(data: SourcedDict, problems: _Problems) -> tuple[CudaRelease, ...]:
    table = data.get("cuda_releases")
    if table is None:
        return ()
    if not isinstance(table, SourcedDict):
        problems.add(data, "cuda_releases", NOT_A_MAPPING, what="a mapping of CUDA version: release",
                     kind=_type_name(table), fix='write "11.8": with release: and nvidia_require_cuda: under it')
        return ()
    releases = []
    for version, fields in table.items():
        context = f"cuda_releases: '{version}': "
        if not re.match(r"^\d+\.\d+$", str(version)):
            problems.add(table, version, NOT_VALID, context="cuda_releases: ", value=version,
                         what='a CUDA version like "11.8"', fix="write the version, quoted")
            continue
        if not isinstance(fields, SourcedDict):
            problems.add(table, version, NOT_A_MAPPING, context="cuda_releases: ", what="a mapping",
                         kind=_type_name(fields), fix="write release: and nvidia_require_cuda: under it")
            continue
        _check_keys(fields, required={"release", "nvidia_require_cuda"}, optional=set(), problems=problems,
                    context=context)
        release = _string(fields, "release", problems, context=context,
                          pattern=re.compile(rf"^{re.escape(str(version))}\.\d+$"),
                          hint=f"a release of CUDA {version}", fix=f"write one such as {version}.0"
                          ) if "release" in fields else ""
        require = _string(fields, "nvidia_require_cuda", problems, context=context,
                          pattern=re.compile(rf"^cuda>={re.escape(str(version))}( |$)"),
                          hint=f"a constraint that starts with cuda>={version}",
                          fix="copy it from the matching nvidia/cuda image's NVIDIA_REQUIRE_CUDA"
                          ) if "nvidia_require_cuda" in fields else ""
        releases.append(CudaRelease(str(version), release, require))
    return tuple(releases)


def _read_flavours(data: SourcedDict, variant_names: set[str], problems: _Problems) -> tuple[Flavour, ...]:
    table = data.get("flavours")
    if table is None:
        return (Flavour(RUNTIME),)
    if not isinstance(table, SourcedDict) or RUNTIME not in table:
        problems.add(data, "flavours", NO_RUNTIME_FLAVOUR, runtime=RUNTIME)
        return (Flavour(RUNTIME),)
    flavours = [_read_flavour(str(name), fields, table, variant_names, problems) for name, fields in table.items()]
    runtime = [flavour for flavour in flavours if flavour.is_runtime]
    return tuple(runtime + [flavour for flavour in flavours if not flavour.is_runtime])


def _read_flavour(name: str, fields: Any, table: SourcedDict, variant_names: set[str],
                  problems: _Problems) -> Flavour:
    context = f"flavour '{name}': "
    if not FLAVOUR_NAME_RE.match(name) or len(name) > FLAVOUR_NAME_MAX:
        problems.add(table, name, NOT_VALID, context=context, value=name, what="a flavour name",
                     fix=f"flavour names are lowercase letters and digits, at most {FLAVOUR_NAME_MAX} (they end "
                         "tags: cu118-devel)")
    if fields is None:
        fields = SourcedDict({}, where=table.origin(name))
    if not isinstance(fields, SourcedDict):
        problems.add(table, name, NOT_A_MAPPING, context=context, what="a mapping", kind=_type_name(fields),
                     fix="write the flavour's keys under it, or {} for none")
        return Flavour(name)
    toolchain_keys = {"apt_packages", "pip_packages", "cuda_toolchain", "cuda_components", "lock_packages"}
    _check_keys(fields, required=set(), optional={"bases"} | (set() if name == RUNTIME else toolchain_keys),
                problems=problems, context=context)
    lists = {key: _string_list(fields, key, problems, context=context, check=check, fix=fix) if key in fields else ()
             for key, check, fix in (
                 ("apt_packages", _debian_package_problem, "write the package's name as apt knows it"),
                 ("pip_packages", _pinned_problem, "write name==version, one requirement per item"),
                 ("cuda_components", _component_problem, "name the folder of NVIDIA's redist (cuda_nvcc)"),
                 ("lock_packages", _package_problem, "name a package of the variant's lock, as the lock names it"))}
    toolchain = "" if fields.get("cuda_toolchain") is None else _string(
        fields, "cuda_toolchain", problems, context=context, check=_toolchain_problem,
        fix="write the URL of NVIDIA's redist folder (https://developer.download.nvidia.com/compute/cuda/redist), "
            "or null")
    if toolchain and "cuda_nvcc" not in lists["cuda_components"]:
        problems.add(fields, "cuda_toolchain", NEEDS_NVCC, context=context)
    return Flavour(name, lists["apt_packages"], lists["pip_packages"], toolchain, lists["cuda_components"],
                   _flavour_bases(fields, variant_names, problems, context), lists["lock_packages"])


def _toolchain_problem(url: str) -> str:
    return url_problem(url, schemes=("http", "https", "file"))


def _flavour_bases(fields: SourcedDict, variant_names: set[str], problems: _Problems,
                   context: str) -> tuple[tuple[str, str], ...]:
    bases = fields.get("bases")
    if bases is None:
        return ()
    if not isinstance(bases, SourcedDict):
        problems.add(fields, "bases", NOT_A_MAPPING, context=context, what="a mapping of variant: base image",
                     kind=_type_name(bases), fix="write one `variant: image` line per variant under it")
        return ()
    for variant in bases:
        if variant not in variant_names:
            problems.add(bases, variant, NOT_A_VARIANT, context=context + "bases: ",
                         known=", ".join(sorted(variant_names)))
        _string(bases, variant, problems, context=context + "bases: ", check=reference_problem,
                fix="write name[:tag][@sha256:digest], e.g. ubuntu:22.04")
    return tuple((str(variant), base) for variant, base in bases.items() if isinstance(base, str))


def _debian_package_problem(name: str) -> str:
    return "" if DEBIAN_PACKAGE_RE.match(name) else "is not a Debian package name"


def _requirement_problem(requirement: str) -> str:
    problem = requirement_problem(requirement)
    return f"is not {problem}" if problem else ""


def _pinned_problem(requirement: str) -> str:
    problem = requirement_problem(requirement, pinned=True)
    return f"is not {problem}" if problem else ""


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
            problems.add(data["variants"][variant.name], "cuda", NO_CUDA_RELEASE,
                         context=f"variant '{variant.name}': ", cuda=variant.cuda, flavour=needing[0])


def _check_tags(data: SourcedDict, image: ImageSettings, variants: list[Variant], flavours: tuple[Flavour, ...],
                problems: _Problems) -> None:
    """Every tag a template gives any variant in any flavour, with the longest date, commit and inputs a build can
    stamp, is a valid Docker tag: a long variant name fails here, not after a build."""
    if not image.tag_templates or not isinstance(data.get("image"), SourcedDict):
        return
    for variant in variants:
        values = {"variant": variant.name, "torch": variant.torch, "torch_minor": variant.torch_minor,
                  "python": variant.python, "cuda": variant.cuda or "cpu", **SAMPLE_STAMP}
        for flavour in flavours:
            suffix = "" if flavour.is_runtime else f"-{flavour.name}"
            for template in image.tag_templates:
                try:
                    tag = template.format(**values) + suffix
                except (KeyError, IndexError, ValueError):
                    continue  # _template_problem said so
                problem = tag_problem(tag)
                if problem:
                    problems.add(data["image"], "tags", TAG_TOO_BAD, context="image: ", template=template, tag=tag,
                                 image=f"variant '{variant.name}' in flavour '{flavour.name}'", what=problem)
                    return


def _check_lock_files(data: SourcedDict, folder: Path, variants: list[Variant], problems: _Problems) -> None:
    """A lock that exists must be a regular file: a folder or a device there would be skipped without a word, and
    the build would resolve at build time instead of installing what was locked."""
    for variant in variants:
        for platform in variant.platforms:
            path = folder / variant.lock_path_for(platform)
            try:
                input_file(path, role=f"variant '{variant.name}''s lock for {platform}")
            except TorchdevError as error:
                fields = data["variants"][variant.name]
                problems.add(fields, "lock" if "lock" in fields else None, BAD_LOCK_PATH,
                             context=f"variant '{variant.name}': ", path=path, role="its lock",
                             reason=str(error).split(") ", 1)[-1].split(": ")[0],
                             fix="move it away, or point lock: at a file")


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
        problems.add(data, "variants", NOT_A_MAPPING, what="a non-empty mapping of variants",
                     kind=_type_name(raw_variants), fix="declare at least one variant under it")
    else:
        for name, fields in raw_variants.items():
            variant = _read_variant(name, fields, raw_variants, problems)
            if variant is not None:
                variants.append(variant)
    _check_snapshot_archives(data, image, variants, problems)
    releases = _read_cuda_releases(data, problems)
    flavours = _read_flavours(data, {variant.name for variant in variants}, problems)
    _check_cuda_releases(data, variants, releases, flavours, problems)
    _check_tags(data, image, variants, flavours, problems)
    if sources:
        _check_lock_files(data, sources[0].parent, variants, problems)
    problems.raise_if_any()
    return Matrix(image=image, variants=tuple(variants), sources=sources, flavours=flavours, cuda_releases=releases,
                  origins=key_origins(data))


def overlay_path(*, matrix_path: Path, explicit: str | None, environ: Mapping[str, str] | None = None) -> Path | None:
    """The overlay to apply: --overlay, else $TORCHDEV_OVERLAY (in `environ`, by default this process's), else
    images.local.yaml when it exists."""
    variable = (os.environ if environ is None else environ).get("TORCHDEV_OVERLAY") or None  # empty: unset
    chosen = explicit if explicit is not None else variable
    if chosen is not None:
        if not chosen.strip():
            raise EMPTY_OVERLAY(source="--overlay")
        path = Path(chosen)
        if input_file(path, role="the overlay, from --overlay or TORCHDEV_OVERLAY") is None:
            raise NO_OVERLAY(path=path)
        return path
    local = matrix_path.with_name("images.local.yaml")
    return input_file(local, role="the local overlay beside images.yaml")


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
