"""cosign behind one narrow interface: the only module of torchdev that runs it (like engine.py for Docker).

Key pairs only: keyless signing (Fulcio certificates from an OIDC login) needs the public internet, which the hosts
torchdev is made for may not reach. The transparency log (Rekor) is off unless asked for (`tlog=True`): uploading
needs the internet too, and publishes the signature, the image digest and the public key to a public log for good.
Without it, verification says so (`--insecure-ignore-tlog=true`) and nothing vouches for when a signature was made.

The private key's password reaches cosign the way cosign reads it, from COSIGN_PASSWORD in the environment it
inherits; torchdev never reads, prints or stores it. Results are plain values (status and output); what a failure
means is decided by the pure functions in torchdev.trust.
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from torchdev.errors import RUNTIME, Problem, TorchdevError

COSIGN_FIX = ("install cosign: `sudo scripts/cosign.sh install` (Debian's cosign 2.5 from trixie), or sigstore's "
              "own packages (docs.sigstore.dev/cosign/system_config/installation)")
TIMEOUT_S = 300
NO_COSIGN = Problem("cosign is not on PATH", COSIGN_FIX, TorchdevError, RUNTIME)


@dataclass(frozen=True)
class CosignResult:
    """What one cosign command answered: its exit status, stdout (the JSON it prints) and stderr (its errors)."""

    status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.status == 0


class Cosign:
    """The cosign CLI with the options every call shares: the registry flags (plain-HTTP or untrusted-TLS
    registries only) and whether the transparency log is used. Construct it with `Cosign.find()`."""

    def __init__(self, binary: str, *, tlog: bool = False) -> None:
        self._binary = binary
        self.tlog = tlog

    @classmethod
    def find(cls, *, tlog: bool = False) -> Cosign:
        binary = shutil.which("cosign")
        if binary is None:
            raise NO_COSIGN()
        return cls(binary, tlog=tlog)

    def _run(self, *args: str) -> CosignResult:
        try:
            done = subprocess.run([self._binary, *args], capture_output=True, text=True, timeout=TIMEOUT_S,
                                  check=False, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return CosignResult(124, "", f"cosign {args[0]} did not finish within {TIMEOUT_S} s")
        return CosignResult(done.returncode, done.stdout, done.stderr)

    def _upload(self) -> list[str]:
        return [f"--tlog-upload={'true' if self.tlog else 'false'}"]

    def _check_tlog(self) -> list[str]:
        return [] if self.tlog else ["--insecure-ignore-tlog=true"]

    def public_key(self, key: Path) -> CosignResult:
        """The public key (PEM) of a private key file; it also proves the password (COSIGN_PASSWORD) opens it,
        before anything is pushed."""
        return self._run("public-key", "--key", str(key))

    def triangulate(self, reference: str, *, registry: tuple[str, ...]) -> CosignResult:
        """Where the signatures of `reference` live (`repo:sha256-<digest>.sig`): the digest a tag names now."""
        return self._run("triangulate", *registry, reference)

    def sign(self, reference: str, *, key: Path, annotations: dict[str, str],
             registry: tuple[str, ...]) -> CosignResult:
        notes = [f"--annotations={name}={value}" for name, value in annotations.items()]
        return self._run("sign", "--key", str(key), "--yes", *self._upload(), *registry, *notes, reference)

    def attest(self, reference: str, *, key: Path, predicate: Path, kind: str,
               registry: tuple[str, ...]) -> CosignResult:
        """Attach `predicate` as a signed attestation of type `kind`, replacing an earlier one of that type."""
        return self._run("attest", "--key", str(key), "--yes", "--replace", *self._upload(), *registry, "--type",
                         kind, "--predicate", str(predicate), reference)

    def verify(self, reference: str, *, key: Path, registry: tuple[str, ...]) -> CosignResult:
        return self._run("verify", "--key", str(key), *self._check_tlog(), *registry, "--output", "json", reference)

    def verify_attestation(self, reference: str, *, key: Path, kind: str,
                           registry: tuple[str, ...]) -> CosignResult:
        return self._run("verify-attestation", "--key", str(key), *self._check_tlog(), *registry, "--type", kind,
                         reference)
