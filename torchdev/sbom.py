"""The image's bill of materials as an SPDX 2.3 JSON document, derived from the manifest the image carries.

Why SPDX 2.3 JSON and not CycloneDX 1.5: it is what BuildKit's own SBOM attestations and Docker's official images
ship, so the tools that already read those (`docker buildx imagetools inspect --format '{{ json .SBOM }}'`,
Docker Scout) read torchdev's too; cosign attaches it as `--type spdxjson` and sigstore's policy-controller checks
it under that name; Trivy (`trivy sbom FILE`) and Grype (`grype sbom:FILE`) read it. The document is written by the
SPDX project's own library (spdx-tools), which validates it against the SPDX 2.3 rules before writing.

What is in it: the image itself (the described package, by digest), the base image it descends from, the operating
system (ID and version from the image's /etc/os-release) containing every Debian package (purl pkg:deb/...?arch=
&distro=, which is how scanners pick the advisories), and every Python distribution (purl pkg:pypi/..., the hash of
its installed-file list, and the sha256 of the lock it was installed from).

Deterministic: the same manifest and image facts give the same bytes. No clock and no random identifier: the
document's time is the image's own `created` time (SOURCE_DATE_EPOCH), its namespace is derived from the image digest
and the manifest's content, and element IDs from each package's purl.

Pure: a manifest and ImageFacts in, text out; reading them from an image is the caller's business.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass
from datetime import datetime

from packageurl import PackageURL
from spdx_tools.spdx.model import (Actor, ActorType, CreationInfo, Document, ExternalPackageRef,
                                   ExternalPackageRefCategory, Package, PackagePurpose, Relationship,
                                   RelationshipType, SpdxNoAssertion)
from spdx_tools.spdx.writer.json.json_writer import write_document_to_stream

SPDX_VERSION = "SPDX-2.3"
PREDICATE_TYPE = "https://spdx.dev/Document"
"""The in-toto predicate type cosign gives it (`cosign attest --type spdxjson`)."""
NAMESPACE_PREFIX = "urn:torchdev:spdx:"
"""torchdev has no web site to name documents under; a URN is a URI that claims none."""


@dataclass(frozen=True)
class ImageFacts:
    """What the SBOM says of the image itself, read at the edge: where it lives (repository, the manifest digest a
    pull gets), its tags, its created time (SOURCE_DATE_EPOCH), the commit and source it was built from, and the
    operating system its Debian packages belong to (/etc/os-release ID and VERSION_ID)."""

    repository: str
    digest: str
    tags: tuple[str, ...]
    created: datetime
    revision: str
    source: str
    os_id: str
    os_version: str
    platforms: tuple[str, ...] = ()


@dataclass(frozen=True)
class Listed:
    """One package as an SBOM lists it: its kind (deb, pypi), name and version; what tests compare with the
    manifest."""

    kind: str
    name: str
    version: str


def _spdx_id(kind: str, name: str, key: str) -> str:
    """An element ID from the package's kind and name plus a short hash of its purl: stable across runs, unique even
    where two names differ only in characters SPDX IDs cannot hold (g++ and g--)."""
    readable = re.sub(r"[^A-Za-z0-9.-]", "-", name)
    return f"SPDXRef-{kind}-{readable}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def _purl_ref(purl: str) -> ExternalPackageRef:
    return ExternalPackageRef(ExternalPackageRefCategory.PACKAGE_MANAGER, "purl", purl)


def _image_name(repository: str) -> str:
    return repository.rsplit("/", 1)[-1]


def image_purl(facts: ImageFacts) -> str:
    """pkg:oci/<name>@<digest>?repository_url=<repository>&tag=<first tag> (the purl spec's OCI type: the version is
    the digest a pull gets)."""
    qualifiers = {"repository_url": facts.repository, **({"tag": facts.tags[0]} if facts.tags else {})}
    if len(facts.platforms) == 1:
        qualifiers["arch"] = facts.platforms[0].split("/")[1]
    return PackageURL(type="oci", name=_image_name(facts.repository), version=facts.digest,
                      qualifiers=qualifiers).to_string()


def base_purl(base: str, digest: str | None) -> str:
    """The base image as a purl: by digest when pinned, else by its tag alone (no version: nothing fixes it)."""
    name = base.partition("@")[0]
    tag = name.rpartition(":")[2] if ":" in name.rpartition("/")[2] else ""
    repository = name[: -len(tag) - 1] if tag else name
    qualifiers = {"repository_url": repository, **({"tag": tag} if tag else {})}
    return PackageURL(type="oci", name=_image_name(repository), version=digest or None,
                      qualifiers=qualifiers).to_string()


def deb_purl(package: dict, facts: ImageFacts) -> str:
    distro = f"{facts.os_id}-{facts.os_version}" if facts.os_id and facts.os_version else None
    qualifiers = {"arch": package["architecture"], **({"distro": distro} if distro else {})}
    return PackageURL(type="deb", namespace=facts.os_id or "debian", name=package["name"], version=package["version"],
                      qualifiers=qualifiers).to_string()


def pypi_purl(package: dict) -> str:
    """pypi names are normalized in purls (lower case, '-' for '_'); packageurl does it."""
    return PackageURL(type="pypi", name=package["name"], version=package["version"]).to_string()


def namespace(manifest: dict, facts: ImageFacts) -> str:
    """Unique per document, the same for the same inputs: the image digest and a hash of everything else."""
    content = json.dumps({"manifest": manifest, "facts": repr(facts)}, sort_keys=True).encode()
    return f"{NAMESPACE_PREFIX}{facts.digest.replace(':', '-')}:{hashlib.sha256(content).hexdigest()[:32]}"


def _library(spdx_id: str, name: str, version: str, purl: str, **fields) -> Package:
    return Package(spdx_id=spdx_id, name=name, version=version, download_location=SpdxNoAssertion(),
                   files_analyzed=False, primary_package_purpose=PackagePurpose.LIBRARY,
                   external_references=[_purl_ref(purl)], **fields)


def python_source_info(manifest: dict) -> str:
    lock = manifest.get("lock_sha256")
    return (f"installed by pip --require-hashes from the lock with sha256 {lock}" if lock
            else "resolved by pip at build time (the variant has no lock)")


def document(manifest: dict, facts: ImageFacts) -> Document:
    """The SPDX document of one image: image DESCENDANT_OF base; image CONTAINS the OS, which CONTAINS every
    Debian package; image CONTAINS every Python distribution."""
    image_id = _spdx_id("Image", _image_name(facts.repository), facts.digest)
    base = manifest["base"]
    base_ref = base_purl(base["image"], base.get("digest"))
    base_id = _spdx_id("Base", base["image"], base_ref)
    os_id = f"SPDXRef-OperatingSystem-{re.sub(r'[^A-Za-z0-9.-]', '-', facts.os_id or 'debian')}"
    lock = manifest.get("lock_sha256") or "none"
    snapshot = ", ".join(f"{name}={url}" for name, url in sorted((manifest.get("apt_snapshot") or {}).items()))
    packages = [
        Package(spdx_id=image_id, name=facts.repository, version=facts.digest, download_location=SpdxNoAssertion(),
                files_analyzed=False, primary_package_purpose=PackagePurpose.CONTAINER,
                external_references=[_purl_ref(image_purl(facts))],
                source_info=f"built by torchdev from {facts.source} at commit {facts.revision}",
                comment=f"tags: {', '.join(facts.tags) or 'none'}; lock sha256: {lock}; "
                        f"apt snapshot: {snapshot or 'none (live archives)'}"),
        Package(spdx_id=base_id, name=base["image"], version=base.get("digest") or None,
                download_location=SpdxNoAssertion(), files_analyzed=False,
                primary_package_purpose=PackagePurpose.CONTAINER, external_references=[_purl_ref(base_ref)],
                comment=None if base.get("digest") else "the base is not pinned by digest (./dev pin)"),
        Package(spdx_id=os_id, name=facts.os_id or "debian", version=facts.os_version or None,
                download_location=SpdxNoAssertion(), files_analyzed=False,
                primary_package_purpose=PackagePurpose.OPERATING_SYSTEM),
    ]
    relationships = [Relationship("SPDXRef-DOCUMENT", RelationshipType.DESCRIBES, image_id),
                     Relationship(image_id, RelationshipType.DESCENDANT_OF, base_id),
                     Relationship(image_id, RelationshipType.CONTAINS, os_id)]
    for deb in manifest["debian_packages"]:
        purl = deb_purl(deb, facts)
        packages.append(_library(_spdx_id("deb", deb["name"], purl), deb["name"], deb["version"], purl))
        relationships.append(Relationship(os_id, RelationshipType.CONTAINS, packages[-1].spdx_id))
    source_info = python_source_info(manifest)
    for dist in manifest["python"]["packages"]:
        purl = pypi_purl(dist)
        packages.append(_library(_spdx_id("pypi", dist["name"], purl), dist["name"], dist["version"], purl,
                                 source_info=source_info,
                                 comment=f"RECORD sha256 {dist['record_sha256']} (its installed-file list)"))
        relationships.append(Relationship(image_id, RelationshipType.CONTAINS, packages[-1].spdx_id))
    creation = CreationInfo(spdx_version=SPDX_VERSION, spdx_id="SPDXRef-DOCUMENT",
                            name=f"{facts.repository}@{facts.digest}", document_namespace=namespace(manifest, facts),
                            creators=[Actor(ActorType.TOOL, f"torchdev-{facts.revision[:12]}")], created=facts.created,
                            document_comment="Derived from the manifest the image carries "
                                             "(/usr/share/torchdev/manifest.json), written at build time.")
    return Document(creation_info=creation, packages=packages, relationships=relationships)


def render(manifest: dict, facts: ImageFacts) -> str:
    """The SPDX JSON text, validated by spdx-tools (a document that breaks the SPDX 2.3 rules is a ValueError
    naming each problem, never written)."""
    stream = io.StringIO()
    write_document_to_stream(document(manifest, facts), stream, validate=True)
    return stream.getvalue() + "\n"


def listed_packages(sbom: dict) -> set[Listed]:
    """The Debian and Python packages an SPDX JSON document lists, read from their purls."""
    found = set()
    for package in sbom.get("packages", []):
        for ref in package.get("externalRefs", []):
            if ref.get("referenceType") == "purl":
                purl = PackageURL.from_string(ref["referenceLocator"])
                if purl.type in ("deb", "pypi"):
                    found.add(Listed(purl.type, package["name"], package.get("versionInfo", "")))
    return found


def manifest_packages(manifest: dict) -> set[Listed]:
    """The same view of an image's manifest: what its SBOM must list, no more and no less."""
    return ({Listed("deb", p["name"], p["version"]) for p in manifest["debian_packages"]}
            | {Listed("pypi", p["name"], p["version"]) for p in manifest["python"]["packages"]})


def parse_os_release(text: str) -> tuple[str, str]:
    """(ID, VERSION_ID) from /etc/os-release text ('' for what it does not say)."""
    values = {}
    for line in text.splitlines():
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip('"')
    return values.get("ID", ""), values.get("VERSION_ID", "")
