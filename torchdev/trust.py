"""What a signature on a pushed image says, and what a failed check means: pure functions over cosign's output.

A signature covers one manifest digest, never a tag: tags move. So each signature carries, in its signed
annotations, the tags the digest was pushed under and when it was signed (by the signer's clock). That is what lets
`./dev verify` tell "this tag was signed, and has since been moved to other content" apart from "never signed":
- the tag names a digest that this key signed, for that tag: verified;
- it names a digest this key signed for other tags only: the tag was moved onto other signed content;
- it names a digest nobody signed, but the signature record of an earlier `./dev push --sign`
  (reports/push/<image>.signature.json) says the tag was signed as another digest, and that digest's signature
  still verifies with the key and names the tag: the tag was moved since signing;
- otherwise: not signed.
The annotations travel with the signature, so the first two hold on any host; the third needs the record, which
only the host (or CI job) that pushed keeps: elsewhere a moved tag reads as "not signed", which is also true of the
content it names now.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
from dataclasses import dataclass

from torchdev.errors import RUNTIME, USAGE, Problem, TorchdevError, UsageError

NOT_PEM = Problem("{path}: not a PEM public key", "name cosign.pub, as `cosign generate-key-pair` writes it",
                  UsageError, USAGE)
UNEXPECTED_COSIGN_OUTPUT = Problem("{command} printed what torchdev cannot read ({error})", "check `cosign "
                                   "version`: torchdev expects cosign 2", TorchdevError, RUNTIME)
NOT_A_SIGNATURE_LOCATION = Problem("cosign triangulate answered {answer}, not a signature location",
                                   "check `cosign version`: torchdev expects cosign 2", TorchdevError, RUNTIME)

TAGS_ANNOTATION = "io.torchdev.tags"
"""The tags the digest was pushed under, space-separated (cosign's annotation flag splits values at commas)."""
SIGNED_AT_ANNOTATION = "io.torchdev.signed-at"
IMAGE_ANNOTATION = "io.torchdev.image"
SBOM_TYPE = "spdxjson"
"""`cosign attest --type` of the SBOM (torchdev.sbom); its in-toto predicate type is https://spdx.dev/Document."""
PROVENANCE_TYPE = "slsaprovenance1"
"""... of the provenance (torchdev.provenance); its predicate type is https://slsa.dev/provenance/v1."""
ATTESTED = ((SBOM_TYPE, "SBOM (SPDX 2.3)"), (PROVENANCE_TYPE, "SLSA v1 provenance"))
"""What `./dev push --sign` attaches and `./dev verify` and the admission policy require, besides the signature."""
HTTP_FLAGS = ("--allow-http-registry", "--allow-insecure-registry")


class VerifyFailure(TorchdevError):
    """One check of `./dev verify` failed; str() is the one line that says which and why (exit 1)."""


def key_fingerprint(pem: str, *, path: str = "the key") -> str:
    """sha256 of the key's DER (SubjectPublicKeyInfo), as `sha256:<hex>`: the same for the same key in any file."""
    body = "".join(line.strip() for line in pem.strip().splitlines() if not line.startswith("-----"))
    try:
        der = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise NOT_PEM(path=path) from None
    if not body or "PUBLIC KEY" not in pem:
        raise NOT_PEM(path=path)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def signature_annotations(*, image: str, tags: tuple[str, ...], signed_at: str) -> dict[str, str]:
    """What each signature says besides the digest: the image (variant and flavour), its tags, when."""
    return {IMAGE_ANNOTATION: image, TAGS_ANNOTATION: " ".join(tags), SIGNED_AT_ANNOTATION: signed_at}


def insecure_registry(registry: str, *, engine_info: dict | None) -> bool:
    """Whether the registry is reached over plain HTTP (or TLS that is not verified), as Docker reaches it: a
    loopback address, or one the engine lists as insecure (daemon.json `insecure-registries`). Only then does cosign
    get `--allow-http-registry --allow-insecure-registry`."""
    host = registry[1:registry.index("]")] if registry.startswith("[") else registry.split(":")[0]
    config = (engine_info or {}).get("RegistryConfig") or {}
    index = (config.get("IndexConfigs") or {}).get(registry) or {}
    if index.get("Secure") is False:
        return True
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    cidrs = config.get("InsecureRegistryCIDRs") or []
    return address.is_loopback or any(address in ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def registry_flags(registry: str, *, engine_info: dict | None) -> tuple[str, ...]:
    return HTTP_FLAGS if insecure_registry(registry, engine_info=engine_info) else ()


def triangulated_digest(output: str) -> str:
    """The digest from `cosign triangulate` (`repo:sha256-<hex>.sig`)."""
    tag = output.strip().splitlines()[-1].rsplit(":", 1)[-1] if output.strip() else ""
    algorithm, _, rest = tag.partition("-")
    value = rest.removesuffix(".sig")
    if algorithm != "sha256" or len(value) != 64:
        raise NOT_A_SIGNATURE_LOCATION(answer=repr(output.strip()))
    return f"sha256:{value}"


@dataclass(frozen=True)
class Signed:
    """One verified signature: the digest it covers, the repository it names, the tags and time it claims."""

    digest: str
    repository: str
    tags: tuple[str, ...]
    signed_at: str
    image: str


def signatures(output: str) -> list[Signed]:
    """The signatures `cosign verify --output json` printed (each a simple-signing payload); one line when cosign
    printed something else."""
    try:
        return _signatures(output)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise UNEXPECTED_COSIGN_OUTPUT(command="cosign verify", error=f"{type(error).__name__}: {error}") from None


def _signatures(output: str) -> list[Signed]:
    found = []
    for payload in json.loads(output or "[]"):
        optional = payload.get("optional") or {}
        critical = payload["critical"]
        found.append(Signed(digest=critical["image"]["docker-manifest-digest"],
                            repository=critical["identity"]["docker-reference"],
                            tags=tuple(optional.get(TAGS_ANNOTATION, "").split()),
                            signed_at=optional.get(SIGNED_AT_ANNOTATION, ""), image=optional.get(IMAGE_ANNOTATION, "")))
    return found


def statements(output: str) -> list[dict]:
    """The in-toto statements in the DSSE envelopes `cosign verify-attestation` printed, one per line; one line when
    cosign printed something else."""
    found = []
    try:
        for line in output.splitlines():
            if line.strip().startswith("{"):
                envelope = json.loads(line)
                found.append(json.loads(base64.b64decode(envelope["payload"])))
    except (ValueError, KeyError, TypeError, binascii.Error) as error:
        raise UNEXPECTED_COSIGN_OUTPUT(command="cosign verify-attestation",
                                       error=f"{type(error).__name__}: {error}") from None
    return found


def cosign_cause(stderr: str) -> str:
    """cosign's own reason, without its `Error:` and `error during command execution:` repetition."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and not line.startswith("WARNING")]
    reasons = [line.removeprefix("Error: ") for line in lines if line.startswith("Error: ")]
    return (reasons or lines or ["no reason given"])[-1]


def registry_problem(stderr: str, registry: str) -> str:
    """A registry-level failure in cosign's words, as one line with the fix ('' when it is none of these)."""
    lowered = stderr.lower()
    if "connection refused" in lowered or "no such host" in lowered or "i/o timeout" in lowered:
        return f"cannot reach the registry {registry}: is it running, and is the address right?"
    if "unauthorized" in lowered or "authentication required" in lowered:
        return f"{registry} wants a login: run `docker login {registry}` (cosign reads Docker's credentials)"
    if "http response to https client" in lowered:
        return (f"{registry} speaks plain HTTP: add it to \"insecure-registries\" in /etc/docker/daemon.json, or "
                "serve it over TLS")
    if "x509" in lowered or "certificate" in lowered:
        return f"{registry}'s TLS certificate is not trusted: put its CA in /etc/docker/certs.d/{registry}/ca.crt"
    return ""


NOT_SIGNED = 10
"""cosign verify's exit status when the digest has no signature at all."""
OTHER_KEY = 12
"""... when it has signatures, but none verifies with the key."""


@dataclass(frozen=True)
class Moved:
    """Where a tag pointed when it was signed: the digest, who signed it when (from the signature record)."""

    digest: str
    signed_at: str


def tag_problem(*, reference: str, tag: str | None, digest: str, signed: list[Signed], fingerprint: str) -> str:
    """Why the signatures on the digest a tag names do not vouch for that tag ('' when they do, or when the
    reference names a digest): the tag was moved onto content signed for other tags."""
    if tag is None:
        return ""
    tags = sorted({name for signature in signed for name in signature.tags})
    if tag in tags:
        return ""
    return (f"{reference} names {digest}, which key {fingerprint} signed for tag(s) {', '.join(tags) or 'none'}, not "
            f"{tag}: the tag was moved to other content after signing")


def moved_line(*, reference: str, digest: str, moved: Moved, fingerprint: str) -> str:
    return (f"{reference} was signed as {moved.digest} (key {fingerprint}, {moved.signed_at}) and now names {digest}, "
            "which is not signed: the tag was moved to other content since signing")


def not_signed_line(*, reference: str, digest: str) -> str:
    return (f"{reference} ({digest}) is not signed: no signature in the registry; push it with "
            "`./dev push --sign KEY`")


def other_key_line(*, reference: str, digest: str, key: str, fingerprint: str) -> str:
    return (f"{reference} ({digest}) is signed, but by another key: no signature verifies with {key} "
            f"({fingerprint})")


def no_attestation(stderr: str) -> bool:
    """cosign's two ways of saying that no attestation of the type verifies: none at all, or only of other types."""
    return "no matching attestations" in stderr or "none of the attestations matched" in stderr


def missing_attestation_line(*, reference: str, what: str, kind: str, key: str) -> str:
    return (f"{reference} has no {what} attestation (cosign --type {kind}) signed by {key}: sign it again with "
            "`./dev push --sign KEY`, which attaches both")
