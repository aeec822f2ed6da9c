"""Files torchdev writes under reports/ and reads back later, each as a typed record with its writer and a validating
reader: one definition of the format that every command reading it shares.

A file that is not what torchdev wrote (cut short, edited by hand, from another version) is a RecordError naming
the file and what is wrong; the command that reads it adds which command writes it again. The smoke summary's record
lives with the suite that writes it (smoke/smoke_contract.py); where each run's summary lies is here, for `./dev smoke`
writes it and `./dev push` reads it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from torchdev.errors import TorchdevError
from torchdev.files import write_atomically
from torchdev.plan import BuildPlan
from torchdev.platforms import AMD64, Platform


class RecordError(TorchdevError):
    """A record file that is not what torchdev writes; str() names the file, the problem and, when given, the fix."""

    def __init__(self, path: Path, problem: str, fix: str = ""):
        super().__init__(f"{path} is unreadable ({problem})" + (f": {fix}" if fix else ""))
        self.path, self.problem = path, problem


def _load(path: Path) -> object:
    """A record file's JSON, or RecordError for an empty, cut short or non-JSON one."""
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise RecordError(path, "it is not text") from None
    if not text.strip():
        raise RecordError(path, "it is empty")
    try:
        return json.loads(text)
    except ValueError as error:
        raise RecordError(path, f"it is not JSON, or cut short ({error})") from None


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


# --- reports/push/gzip-digests.json -----------------------------------------------------------------------------

GZIP_DIGESTS = "gzip-digests.json"
"""In reports/push/: image ID -> [gzip manifest digest, size] of every image pushed gzipped (the same image always
gives the same gzip bytes, see torchdev.oci), so a push that would change nothing knows it without recompressing."""


def read_gzip_digests(reports_dir: Path) -> dict[str, tuple[str, int]]:
    """What earlier pushes recorded ({} before the first); RecordError, with the fix, for a file that is not such a
    record."""
    path = reports_dir / GZIP_DIGESTS
    if not path.is_file():
        return {}
    try:
        return _gzip_digests(path)
    except RecordError as error:
        raise RecordError(path, error.problem, fix=f"delete it (`rm {path}`): the next `./dev push` of each image "
                                                   "recompresses it once and records it again") from None


def _gzip_digests(path: Path) -> dict[str, tuple[str, int]]:
    document = _load_object(path)
    for image_id, value in document.items():
        if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
                and isinstance(value[1], int) and not isinstance(value[1], bool)):
            raise RecordError(path, f"the entry for {image_id} is not [digest, size]")
    return {image_id: (digest, size) for image_id, (digest, size) in document.items()}


def record_gzip_digest(reports_dir: Path, image_id: str, *, digest: str, size: int) -> None:
    """Remember what the image became gzipped, once the registry holds it."""
    known = {**read_gzip_digests(reports_dir), image_id: (digest, size)}
    write_atomically(reports_dir / GZIP_DIGESTS, json.dumps(known, indent=1, sort_keys=True) + "\n")


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
