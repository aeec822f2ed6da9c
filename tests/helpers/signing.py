"""What the signing tests make: a throw-away cosign key pair, and a small image with a torchdev manifest.

The small image stands in for a torchdev build where only its manifest and its tags matter (signing, the SBOM, the
provenance): torchdev-base:bookworm plus /usr/share/torchdev/manifest.json listing the base's real Debian packages
(dpkg-query in it) and a few Python distributions. Pushing it takes a second, where the 4.7 GB test image takes
minutes."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from pathlib import Path

from tests.helpers.cli import unavailable

BASE = "torchdev-base:bookworm"
PYTHON = [{"name": "numpy", "version": "1.26.4"}, {"name": "PyYAML", "version": "6.0.2"},
          {"name": "torch", "version": "2.0.1"}]


def cosign_env(password: str) -> dict[str, str]:
    return {**os.environ, "COSIGN_PASSWORD": password}


def key_pair(folder: Path, name: str, password: str) -> tuple[Path, Path]:
    """`cosign generate-key-pair` into `folder`: (private key, public key)."""
    if subprocess.run(["cosign", "version"], capture_output=True, check=False).returncode != 0:
        unavailable("cosign is not installed (scripts/cosign.sh install)")
    subprocess.run(["cosign", "generate-key-pair", "--output-key-prefix", str(folder / name)], cwd=folder,
                   env=cosign_env(password), capture_output=True, check=True, timeout=60)
    return folder / f"{name}.key", folder / f"{name}.pub"


def debian_packages(docker_client, image: str) -> list[dict]:
    """What write_manifest.py records, asked of dpkg in the image itself."""
    output = docker_client.containers.run(image, ["dpkg-query", "-W", "-f",
                                                  "${Package}\\t${Version}\\t${Architecture}\\n"],
                                          remove=True, network_disabled=True).decode()
    rows = sorted(line.split("\t") for line in output.splitlines() if line)
    return [{"name": name, "version": version, "architecture": arch} for name, version, arch in rows]


def manifest(docker_client) -> dict:
    """A manifest as docker/write_manifest.py writes it, for an image that is the base plus that file."""
    return {"declared": {"variant": "cu117", "flavour": "runtime"}, "base": {"image": BASE, "digest": None},
            "lock_sha256": hashlib.sha256(b"the test lock").hexdigest(), "apt_snapshot": None,
            "python": {"version": "3.11.2", "packages": [
                {**package, "record_sha256": hashlib.sha256(package["name"].encode()).hexdigest()}
                for package in PYTHON]},
            "torch_cuda_architectures": [], "debian_packages": debian_packages(docker_client, BASE)}


def small_image(docker_client, folder: Path, content: dict) -> str:
    """Build the base plus the manifest; returns the image ID (untagged: the caller names it)."""
    (folder / "manifest.json").write_text(json.dumps(content, indent=1, sort_keys=True) + "\n")
    (folder / "Dockerfile").write_text(f"FROM {BASE}\nCOPY manifest.json /usr/share/torchdev/manifest.json\n")
    image, _ = docker_client.images.build(path=str(folder), rm=True, network_mode="none")
    return image.id


def attestation(reference: str, public_key: Path, kind: str) -> dict:
    """The predicate of the `kind` attestation cosign verifies on `reference` (loopback registry: plain HTTP)."""
    done = subprocess.run(["cosign", "verify-attestation", "--key", str(public_key), "--insecure-ignore-tlog=true",
                           "--allow-http-registry", "--allow-insecure-registry", "--type", kind, reference],
                          capture_output=True, text=True, check=True, timeout=120)
    envelope = json.loads(done.stdout.splitlines()[-1])
    return json.loads(base64.b64decode(envelope["payload"]))["predicate"]


def sample_manifest(*, debian: int = 3) -> dict:
    """A manifest as docker/write_manifest.py writes it, for unit tests: Debian packages whose names and versions
    hold the characters SPDX IDs and purls must cope with (+, ~, :), and Python distributions in mixed case."""
    names = ["libstdc++6", "g++", "g--", "libc6", "python3.11"][:max(debian, 1)]
    versions = ["12.2.0-14", "4:12.2.0-3", "1.0~rc1", "2.36-9+deb12u7", "3.11.2-6"]
    return {"declared": {"variant": "cu117", "flavour": "runtime"},
            "base": {"image": "ubuntu:22.04@sha256:" + "b" * 64, "digest": "sha256:" + "b" * 64},
            "lock_sha256": "c" * 64, "apt_snapshot": {"ubuntu": "http://snapshot.ubuntu.com/ubuntu/20261101T000000Z"},
            "python": {"version": "3.10.12", "packages": [
                {"name": "PyYAML", "version": "6.0.2", "record_sha256": "d" * 64},
                {"name": "nvidia_cudnn_cu11", "version": "8.5.0.96", "record_sha256": "e" * 64},
                {"name": "torch", "version": "2.0.1", "record_sha256": "f" * 64}]},
            "torch_cuda_architectures": [],
            "debian_packages": [{"name": n, "version": v, "architecture": "amd64"} for n, v in zip(names, versions)]}
