"""Files torchdev writes under reports/ and reads back later, each as a typed record with its writer and a validating
reader: one definition of the format that every command reading it shares.

A file that is not what torchdev wrote (cut short, edited by hand, from another version) is a RecordError naming
the file and what is wrong; the command that reads it adds which command writes it again. The smoke summary's record
lives with the suite that writes it (smoke/smoke_contract.py); where each run's summary lies is here, for `./dev smoke`
writes it and `./dev push` reads it.
"""
from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from smoke.smoke_contract import SmokeSummary, SummaryError, read_summary
from torchdev.errors import STATE, Problem, TorchdevError
from torchdev.files import kind_of, write_atomically
from torchdev.plan import BuildPlan
from torchdev.platforms import AMD64, Platform


UNREADABLE_RECORD = Problem("{path} is unreadable ({problem})", "{fix}", TorchdevError, STATE)
"""A file torchdev wrote and reads back that is not what it wrote; the fix names the command that writes it again."""


class RecordError(TorchdevError):
    """A record file that is not what torchdev writes; str() names the file, the problem and, when given, the fix
    (UNREADABLE_RECORD's line)."""

    def __init__(self, path: Path, problem: str, fix: str = ""):
        super().__init__(UNREADABLE_RECORD.line(path=path, problem=problem, fix=fix).rstrip(": "))
        self.path, self.problem = path, problem


def read_text(path: Path) -> str:
    """A file torchdev reads back, as text: RecordError when it is a folder, a device, unreadable or not UTF-8
    (FileNotFoundError when there is none: whether that is a problem is the reader's to say)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise
    except OSError as error:
        raise RecordError(path, error.strerror or str(error)) from None
    if not stat.S_ISREG(mode):
        raise RecordError(path, f"it is {kind_of(mode)}, not a file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RecordError(path, "it is not text") from None
    except OSError as error:
        raise RecordError(path, error.strerror or str(error)) from None


def parse_json(path: Path | str, text: str) -> object:
    """A record's JSON, or RecordError for an empty, cut short or non-JSON one (`path` names where it came from)."""
    if not text.strip():
        raise RecordError(path, "it is empty")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:
        raise RecordError(path, f"it is not JSON, or cut short ({str(error)[:120]})") from None


def _load(path: Path) -> object:
    """A record file's JSON, or RecordError for an empty, cut short, non-JSON or unreadable one."""
    return parse_json(path, read_text(path))


def _load_object(path: Path) -> dict:
    """A record file's JSON object, or RecordError for anything else."""
    document = _load(path)
    if not isinstance(document, dict):
        raise RecordError(path, "it is not a JSON object")
    return document


def _write(path: Path, document: dict) -> Path:
    write_atomically(path, json.dumps(document, indent=1) + "\n")
    return path


def _field(path: Path, document: dict, name: str, kind: type) -> object:
    """`document[name]`, which must be of `kind` (a boolean is no number)."""
    if name not in document:
        raise RecordError(path, f"it has no '{name}'")
    value = document[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise RecordError(path, f"its '{name}' is not {_KINDS[kind]}")
    return value


def _strings(path: Path, document: dict, name: str) -> tuple[str, ...]:
    values = _field(path, document, name, list)
    if not all(isinstance(value, str) for value in values):
        raise RecordError(path, f"its '{name}' is not a list of strings")
    return tuple(values)


_KINDS = {str: "a string", int: "a number", list: "a list", dict: "a JSON object"}


# --- reports/smoke/<run>.json ----------------------------------------------------------------------------------

def run_name(plan: BuildPlan, platform: Platform) -> str:
    """One smoke run's name in tables and report files: the image's, plus the platform unless it is linux/amd64
    (cpu.linux-arm64): the platforms of one multi-platform image are judged, and reported, one by one."""
    return plan.name if platform == AMD64 else f"{plan.name}.{platform.slug}"


def smoke_summary_path(reports_dir: Path, run: str) -> Path:
    """Where the smoke run `run` (run_name's) leaves its JSON summary (smoke_contract.SmokeSummary)."""
    return reports_dir / f"{run}.json"


def read_smoke_summary(path: Path) -> SmokeSummary | None:
    """The summary in `path` (smoke_contract.read_summary's checks), None when there is none; RecordError for one that
    is not a summary, a folder, a device or unreadable."""
    if not os.path.lexists(path):
        return None
    read_text(path)
    try:
        return read_summary(path)
    except SummaryError as error:
        raise RecordError(path, str(error)) from None
    except OSError as error:
        raise RecordError(path, error.strerror or str(error)) from None


# --- buildx's metadata file (in a build's scratch folder) -------------------------------------------------------

def read_build_metadata(path: Path) -> dict[str, str]:
    """What buildx wrote of the image it made: its digests by key (containerimage.digest, ...), strings only."""
    document = _load(path)
    if not isinstance(document, dict):
        raise RecordError(path, "it is not a JSON object")
    return {key: value for key, value in document.items() if isinstance(value, str)}


# --- /usr/share/torchdev/manifest.json inside an image, and its copy in reports/build ---------------------------

@dataclass(frozen=True)
class ImageManifestRecord:
    """What an image's build recorded of it (docker/write_manifest.py): its base, lock, Python and Debian packages;
    `document` is the whole JSON, as the image carries it."""

    base_image: str
    base_digest: str
    lock_sha256: str
    python_packages: tuple[tuple[str, str], ...]
    debian_packages: int
    document: dict


def parse_image_manifest(source: str, text: str) -> ImageManifestRecord:
    """The manifest an image carries (`source` says which image and file), field by field."""
    document = parse_json(source, text)
    if not isinstance(document, dict):
        raise RecordError(source, "it is not a JSON object")
    base = _field(source, document, "base", dict)
    python = _field(source, document, "python", dict)
    packages = _field(source, python, "packages", list)
    if not all(isinstance(p, dict) and isinstance(p.get("name"), str) and isinstance(p.get("version"), str)
               for p in packages):
        raise RecordError(source, "its python packages are not {name, version} objects")
    if not isinstance(base.get("image"), str) or not isinstance(base.get("digest", ""), (str, type(None))):
        raise RecordError(source, "its base is not {image, digest}")
    if "lock_sha256" not in document or not isinstance(document["lock_sha256"], (str, type(None))):
        raise RecordError(source, "its 'lock_sha256' is not a string or null")
    base.setdefault("digest", None)
    lock = document["lock_sha256"]
    debian = _field(source, document, "debian_packages", list)
    return ImageManifestRecord(base_image=str(base.get("image") or ""), base_digest=str(base.get("digest") or ""),
                               lock_sha256=lock if isinstance(lock, str) else "",
                               python_packages=tuple((p["name"], p["version"]) for p in packages),
                               debian_packages=len(debian), document=document)


# --- reports/push/<image>.json ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class PushRecord:
    """What one `./dev push` put in the registry: the image's tags there, the manifest digest they name, each tag
    pinned by it (`references`), the bytes a pull downloads, the layers' compression and the platforms it serves.
    Deployment files and `./dev k8s` read it; it is written only once every tag is pushed."""

    image: str
    tags: tuple[str, ...]
    repository: str
    digest: str
    references: tuple[str, ...]
    size: int
    compression: str
    platforms: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"image": self.image, "tags": list(self.tags), "repository": self.repository, "digest": self.digest,
                "references": list(self.references), "size": self.size, "compression": self.compression,
                "platforms": list(self.platforms)}


def push_record_path(reports_dir: Path, image: str) -> Path:
    return reports_dir / f"{image}.json"


def write_push_record(reports_dir: Path, record: PushRecord) -> Path:
    return _write(push_record_path(reports_dir, record.image), record.to_dict())


def read_push_record(path: Path) -> PushRecord:
    """The record in `path`, field by field; RecordError when it is anything else (OSError when there is none)."""
    document = _load_object(path)
    return PushRecord(image=_field(path, document, "image", str), tags=_strings(path, document, "tags"),
                      repository=_field(path, document, "repository", str),
                      digest=_field(path, document, "digest", str),
                      references=_strings(path, document, "references"), size=_field(path, document, "size", int),
                      compression=_field(path, document, "compression", str),
                      platforms=_strings(path, document, "platforms"))


# --- reports/push/zstd-digests.json -----------------------------------------------------------------------------

COPY_DIGESTS = "zstd-digests.json"
"""In reports/push/: image ID -> [manifest digest, size] of the zstd copy of every image pushed with zstd layers (the
store keeps gzip, torchdev.oci; the same image always gives the same zstd bytes), so a push that would change nothing
knows it without recompressing."""


def read_copy_digests(reports_dir: Path) -> dict[str, tuple[str, int]]:
    """What earlier pushes recorded ({} before the first); RecordError, with the fix, for a file that is not such a
    record."""
    path = reports_dir / COPY_DIGESTS
    if not os.path.lexists(path):
        return {}
    try:
        return _copy_digests(path)
    except RecordError as error:
        raise RecordError(path, error.problem, fix=f"delete it (`rm {path}`): the next `./dev push` of each image "
                                                   "recompresses it once and records it again") from None


def _copy_digests(path: Path) -> dict[str, tuple[str, int]]:
    document = _load_object(path)
    for image_id, value in document.items():
        if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
                and isinstance(value[1], int) and not isinstance(value[1], bool)):
            raise RecordError(path, f"the entry for {image_id} is not [digest, size]")
    return {image_id: (digest, size) for image_id, (digest, size) in document.items()}


def record_copy_digest(reports_dir: Path, image_id: str, *, digest: str, size: int) -> None:
    """Remember what the image's zstd copy was, once the registry holds it."""
    known = {**read_copy_digests(reports_dir), image_id: (digest, size)}
    write_atomically(reports_dir / COPY_DIGESTS, json.dumps(known, indent=1, sort_keys=True) + "\n")


# --- reports/push/<image>.signature.json ------------------------------------------------------------------------

SIGNATURE_SUFFIX = ".signature.json"


@dataclass(frozen=True)
class SignatureRecord:
    """What one `./dev push --sign` signed: the digest, the tags it was pushed under, the key (by fingerprint, never
    the key itself) and when, and the sha256 of the SBOM and provenance attached. `./dev verify` reads it to tell a
    tag moved since signing from one never signed; it is written only once the signature and both attestations are
    in the registry."""

    image: str
    repository: str
    digest: str
    tags: tuple[str, ...]
    key_fingerprint: str
    signed_at: str
    sbom_sha256: str
    provenance_sha256: str

    def to_dict(self) -> dict:
        return {"image": self.image, "repository": self.repository, "digest": self.digest, "tags": list(self.tags),
                "key_fingerprint": self.key_fingerprint, "signed_at": self.signed_at,
                "sbom_sha256": self.sbom_sha256, "provenance_sha256": self.provenance_sha256}


def signature_record_path(reports_dir: Path, image: str) -> Path:
    return reports_dir / f"{image}{SIGNATURE_SUFFIX}"


def write_signature_record(reports_dir: Path, record: SignatureRecord) -> Path:
    return _write(signature_record_path(reports_dir, record.image), record.to_dict())


def read_signature_record(path: Path) -> SignatureRecord:
    """The record in `path`, field by field; RecordError when it is anything else."""
    document = _load_object(path)
    text = {name: _field(path, document, name, str) for name in
            ("image", "repository", "digest", "key_fingerprint", "signed_at", "sbom_sha256", "provenance_sha256")}
    return SignatureRecord(tags=_strings(path, document, "tags"), **text)


def read_signature_records(reports_dir: Path) -> list[SignatureRecord]:
    """Every signature record under `reports_dir`, oldest image name first; RecordError, with the fix, for one that
    is not such a record."""
    records = []
    for path in sorted(reports_dir.glob(f"*{SIGNATURE_SUFFIX}")):
        try:
            records.append(read_signature_record(path))
        except RecordError as error:
            raise RecordError(path, error.problem, fix=f"delete it (`rm {path}`) and sign again with "
                                                       "`./dev push --sign KEY`") from None
    return records
