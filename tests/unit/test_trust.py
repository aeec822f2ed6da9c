"""What a signature says and what a failed check means (torchdev/trust.py), and `./dev verify`'s decisions
(torchdev/signing.verify) against a fake cosign that answers as cosign 2.5 answered against the loopback registry
(tests/integration/test_signing.py runs the real one)."""
from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from torchdev import signing, trust
from torchdev.cosign import CosignResult
from torchdev.errors import TorchdevError
from torchdev.records import SignatureRecord, write_signature_record

REPO = "registry.example.com:5000/ml/torchdev"
SIGNED, MOVED_TO = "sha256:" + "a" * 64, "sha256:" + "b" * 64
PEM = ("-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEPGgLefyOkicW+x5gKcYXF1e2lrmZ\n"
       "IFqm8hKZ8V86MaGEhyPYC2dtRM0Vke5vIxS7YTzkWGcOT664ssQWfLXlfA==\n-----END PUBLIC KEY-----\n")


def test_the_fingerprint_is_the_sha256_of_the_keys_der_as_openssl_computes_it(tmp_path):
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=PEM.encode(), capture_output=True,
                         check=True).stdout
    assert trust.key_fingerprint(PEM) == "sha256:" + hashlib.sha256(der).hexdigest()
    assert trust.key_fingerprint(PEM.replace("\n", "\r\n")) == trust.key_fingerprint(PEM)
    with pytest.raises(TorchdevError):
        trust.key_fingerprint("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nxx\n")


@pytest.mark.parametrize("registry, info, insecure", [
    ("127.0.0.1:5000", None, True), ("localhost:5000", None, True), ("[::1]:5000", None, True),
    ("registry.corp:5000", None, False), ("10.1.2.3:5000", None, False),
    ("registry.corp:5000", {"RegistryConfig": {"IndexConfigs": {"registry.corp:5000": {"Secure": False}}}}, True),
    ("10.1.2.3:5000", {"RegistryConfig": {"InsecureRegistryCIDRs": ["10.0.0.0/8"]}}, True),
    ("registry.corp", {"RegistryConfig": {"IndexConfigs": {"registry.corp": {"Secure": True}}}}, False),
])
def test_only_registries_docker_reaches_insecurely_get_the_http_flags(registry, info, insecure):
    assert trust.insecure_registry(registry, engine_info=info) is insecure
    assert trust.registry_flags(registry, engine_info=info) == (trust.HTTP_FLAGS if insecure else ())


def test_the_annotations_hold_the_tags_without_commas_which_cosign_would_split():
    notes = trust.signature_annotations(image="cu118", tags=("cu118", "2.0-cu118"), signed_at="2026-12-03T00:00:00Z")
    assert all("," not in value for value in notes.values())
    assert notes[trust.TAGS_ANNOTATION] == "cu118 2.0-cu118"


def payload(digest: str, tags: str | None, signed_at: str = "2026-12-03T08:00:00Z") -> dict:
    optional = {trust.TAGS_ANNOTATION: tags, trust.SIGNED_AT_ANNOTATION: signed_at} if tags is not None else {}
    return {"critical": {"identity": {"docker-reference": REPO}, "image": {"docker-manifest-digest": digest},
                         "type": "cosign container image signature"}, "optional": optional}


def envelope(statement: dict) -> str:
    return json.dumps({"payloadType": "application/vnd.in-toto+json",
                       "payload": base64.b64encode(json.dumps(statement).encode()).decode(), "signatures": []})


PROVENANCE = {"buildDefinition": {"resolvedDependencies": [
    {"name": "source", "uri": "git+local@" + "1" * 40, "digest": {"gitCommit": "1" * 40}},
    {"name": "base image", "uri": "docker-image://torchdev-base:bookworm", "annotations": {"pinned": False}},
    {"name": "lock overlays/local-debian/cu117.lock.txt", "uri": "overlays/local-debian/cu117.lock.txt",
     "digest": {"sha256": "2" * 64}}]}}
SBOM = {"packages": [{"name": "libc6", "versionInfo": "2.36", "externalRefs": [
    {"referenceCategory": "PACKAGE_MANAGER", "referenceType": "purl",
     "referenceLocator": "pkg:deb/debian/libc6@2.36?arch=amd64"}]}]}


class FakeCosign:
    """Answers like cosign 2.5: `digests` maps a tag to the digest it names; `signed` a digest to the payloads of
    the signatures that verify with the right key (`other_key`: digests signed only by another key); `attested` a
    digest to its attestation predicates by cosign type."""

    def __init__(self, digests, signed=None, other_key=(), attested=None):
        self.digests, self.signed, self.other_key = digests, signed or {}, set(other_key)
        self.attested = attested or {}
        self.calls = []

    def triangulate(self, reference, *, registry):
        self.calls.append(("triangulate", reference))
        tag = reference.rsplit(":", 1)[1]
        if tag not in self.digests:
            return CosignResult(1, "", f"Error: GET https://{REPO}/manifests/{tag}: MANIFEST_UNKNOWN: manifest unknown")
        return CosignResult(0, f"{REPO}:{self.digests[tag].replace(':', '-')}.sig\n", "")

    def verify(self, reference, *, key, registry):
        self.calls.append(("verify", reference))
        digest = reference.split("@")[1]
        if digest in self.signed:
            return CosignResult(0, json.dumps(self.signed[digest]), "")
        if digest in self.other_key:
            return CosignResult(12, "", "Error: no matching signatures: invalid signature when validating ASN.1")
        return CosignResult(10, "", "Error: no signatures found")

    def verify_attestation(self, reference, *, key, kind, registry):
        digest = reference.split("@")[1]
        predicate = self.attested.get(digest, {}).get(kind)
        if predicate is None:
            return CosignResult(1, "", f"Error: none of the attestations matched the predicate type: {kind}")
        statement = {"_type": "https://in-toto.io/Statement/v0.1", "predicate": predicate,
                     "subject": [{"name": REPO, "digest": {"sha256": digest.split(":")[1]}}]}
        return CosignResult(0, envelope(statement) + "\n", "")


@pytest.fixture()
def key(tmp_path) -> str:
    path = tmp_path / "cosign.pub"
    path.write_text(PEM)
    return str(path)


ATTESTED = {SIGNED: {trust.SBOM_TYPE: SBOM, trust.PROVENANCE_TYPE: PROVENANCE}}


def run_verify(cosign, reference, key, reports: Path) -> signing.Verified:
    return signing.verify(cosign, reference, key=key, reports_dir=reports, flags=())


def test_a_tag_signed_for_its_content_verifies_and_the_report_names_commit_lock_and_time(key, tmp_path):
    cosign = FakeCosign({"cu117": SIGNED}, signed={SIGNED: [payload(SIGNED, "cu117 2.0-cu117")]}, attested=ATTESTED)
    verified = run_verify(cosign, f"{REPO}:cu117", key, tmp_path)
    lines = signing.report(verified, key=key, tlog=False)
    assert lines[0] == f"{REPO}:cu117: signature and attestations verified"
    text = "\n".join(lines)
    assert f"commit:    {'1' * 40}" in text and "overlays/local-debian/cu117.lock.txt (sha256 222222222222)" in text
    assert "2026-12-03T08:00:00Z by the signer's clock" in text and trust.key_fingerprint(PEM) in text
    assert "1 Debian and 0 Python packages" in text and len(lines) <= 8


def test_a_digest_reference_is_verified_without_asking_for_a_tag(key, tmp_path):
    cosign = FakeCosign({}, signed={SIGNED: [payload(SIGNED, "cu117")]}, attested=ATTESTED)
    assert run_verify(cosign, f"{REPO}@{SIGNED}", key, tmp_path).digest == SIGNED
    assert not [call for call in cosign.calls if call[0] == "triangulate"]


def test_never_signed_is_said_in_one_line(key, tmp_path):
    cosign = FakeCosign({"cu117": MOVED_TO})
    with pytest.raises(trust.VerifyFailure, match=r"is not signed: no signature in the registry") as failure:
        run_verify(cosign, f"{REPO}:cu117", key, tmp_path)
    assert "\n" not in str(failure.value)


def test_another_key_is_said_in_one_line(key, tmp_path):
    cosign = FakeCosign({"cu117": SIGNED}, other_key={SIGNED})
    with pytest.raises(trust.VerifyFailure, match=r"is signed, but by another key: no signature verifies with"):
        run_verify(cosign, f"{REPO}:cu117", key, tmp_path)


def record(digest: str, tags: tuple[str, ...]) -> SignatureRecord:
    return SignatureRecord(image="cu117", repository=REPO, digest=digest, tags=tags,
                           key_fingerprint=trust.key_fingerprint(PEM), signed_at="2026-12-03T08:00:00Z",
                           sbom_sha256="3" * 64, provenance_sha256="4" * 64)


def test_a_tag_moved_to_unsigned_content_is_told_from_never_signed_by_the_record_and_the_earlier_signature(
        key, tmp_path):
    write_signature_record(tmp_path, record(SIGNED, ("cu117",)))
    cosign = FakeCosign({"cu117": MOVED_TO}, signed={SIGNED: [payload(SIGNED, "cu117")]})
    with pytest.raises(trust.VerifyFailure, match=rf"was signed as {SIGNED} .* and now names {MOVED_TO}, which is not "
                                                  "signed: the tag was moved to other content since signing"):
        run_verify(cosign, f"{REPO}:cu117", key, tmp_path)


def test_a_record_the_registry_no_longer_backs_is_not_believed(key, tmp_path):
    write_signature_record(tmp_path, record(SIGNED, ("cu117",)))
    cosign = FakeCosign({"cu117": MOVED_TO})  # the earlier digest's signature is gone
    with pytest.raises(trust.VerifyFailure, match="is not signed"):
        run_verify(cosign, f"{REPO}:cu117", key, tmp_path)


def test_a_tag_moved_onto_content_signed_for_other_tags_is_said_from_the_annotations_alone(key, tmp_path):
    cosign = FakeCosign({"cu117": MOVED_TO}, signed={MOVED_TO: [payload(MOVED_TO, "cu118")]}, attested=ATTESTED)
    with pytest.raises(trust.VerifyFailure, match=r"signed for tag\(s\) cu118, not cu117: the tag was moved"):
        run_verify(cosign, f"{REPO}:cu117", key, tmp_path)


@pytest.mark.parametrize("missing, what", [(trust.SBOM_TYPE, "SBOM"), (trust.PROVENANCE_TYPE, "SLSA v1 provenance")])
def test_a_missing_attestation_is_said_in_one_line(key, tmp_path, missing, what):
    attested = {SIGNED: {kind: predicate for kind, predicate in ATTESTED[SIGNED].items() if kind != missing}}
    cosign = FakeCosign({"cu117": SIGNED}, signed={SIGNED: [payload(SIGNED, "cu117")]}, attested=attested)
    with pytest.raises(trust.VerifyFailure, match=rf"has no {what}.* attestation \(cosign --type {missing}\)"):
        run_verify(cosign, f"{REPO}:cu117", key, tmp_path)


def test_a_tag_that_is_not_in_the_registry_and_a_key_that_is_no_key_are_said(key, tmp_path):
    with pytest.raises(trust.VerifyFailure, match=r"is not in the registry"):
        run_verify(FakeCosign({}), f"{REPO}:nope", key, tmp_path)
    bad = tmp_path / "bad.pub"
    bad.write_text("not a key")
    with pytest.raises(TorchdevError, match="not a PEM public key"):
        run_verify(FakeCosign({}), f"{REPO}:cu117", str(bad), tmp_path)


@pytest.mark.parametrize("stderr, expected", [
    ('Error: Get "https://127.0.0.1:5999/v2/": dial tcp 127.0.0.1:5999: connect: connection refused\n'
     "error during command execution: ...", "cannot reach the registry"),
    ("Error: GET https://r/v2/: UNAUTHORIZED: authentication required", "wants a login"),
    ("Error: x509: certificate signed by unknown authority", "TLS certificate is not trusted"),
])
def test_registry_failures_get_their_fix(stderr, expected):
    assert expected in trust.registry_problem(stderr, "127.0.0.1:5999")


def test_cosigns_cause_is_its_last_error_line_without_the_repetition():
    stderr = ("WARNING: Skipping tlog verification is an insecure practice\nError: no signatures found\n"
              "error during command execution: no signatures found\n")
    assert trust.cosign_cause(stderr) == "no signatures found"


def test_triangulate_gives_the_digest_a_tag_names():
    assert trust.triangulated_digest(f"{REPO}:sha256-{'a' * 64}.sig\n") == SIGNED
    with pytest.raises(TorchdevError):
        trust.triangulated_digest("nothing")
