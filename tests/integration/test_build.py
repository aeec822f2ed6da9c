"""The real build path on the real engine: tags, labels, contents, secrets, caching and failures."""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest
import zstandard

from tests.helpers.cli import ROOT, run_cli
from tests.helpers.variants import TEST_REPOSITORY, TEST_VARIANT
from torchdev.matrix import load_matrix
from torchdev.plan import ENGINE_OUTPUT

PEM_RE = re.compile(rb"-----BEGIN CERTIFICATE-----\s+(.+?)\s+-----END CERTIFICATE-----", re.S)


def test_every_computed_tag_points_at_the_built_image(docker_client, built_image):
    assert len(built_image.references) == 4
    for reference in built_image.references:
        assert docker_client.images.get(reference).id == built_image.image_id, reference
    immutable = r":2\.0\.1-cu117-py3\.11-\d{8}-[0-9a-f]{7}(-dirty)?-[0-9a-f]{8}"
    assert re.fullmatch(re.escape(TEST_REPOSITORY) + immutable, built_image.references[-1])


def test_the_image_carries_oci_and_torchdev_labels(docker_client, built_image):
    labels = docker_client.images.get(built_image.image_id).labels
    assert labels["org.opencontainers.image.version"] == "2.0.1-cu117-py3.11"
    assert labels["org.opencontainers.image.title"] == "torchdev cu117"
    assert re.fullmatch(r"[0-9a-f]{40}", labels["org.opencontainers.image.revision"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", labels["org.opencontainers.image.created"])
    assert labels["org.opencontainers.image.source"]
    assert {labels[f"io.torchdev.{key}"] for key in ("variant", "torch", "cuda", "python")} == {
        "cu117", "2.0.1", "11.7", "3.11"}


def test_torch_inside_is_the_declared_cuda_build(containers, built_image):
    script = "import torch; print(torch.__version__, torch.version.cuda, torch.cuda._is_compiled())"
    finished = containers.run(built_image.image_id, ["python", "-c", script], timeout=120)
    assert finished.exit_code == 0, finished.output
    assert finished.output.split()[-3:] == ["2.0.1+cu117", "11.7", "True"]


def test_the_default_user_is_not_root_and_owns_the_workspace(docker_client, containers, built_image):
    assert docker_client.images.get(built_image.image_id).attrs["Config"]["User"] == "torchdev"
    finished = containers.run(built_image.image_id, ["bash", "-c", "id -u; stat -c %U /workspace; pwd; touch x"])
    assert finished.exit_code == 0, finished.output
    assert finished.output.split() == ["1000", "torchdev", "/workspace"]


def test_cuda_variants_declare_what_the_nvidia_runtime_needs(docker_client, built_image, test_overlay):
    env = dict(item.split("=", 1) for item in docker_client.images.get(built_image.image_id).attrs["Config"]["Env"])
    assert (env["NVIDIA_VISIBLE_DEVICES"], env["NVIDIA_DRIVER_CAPABILITIES"]) == ("all", "compute,utility")
    release = load_matrix(ROOT / "images.yaml", overlay=str(test_overlay)).cuda_release("11.7")
    assert env["NVIDIA_REQUIRE_CUDA"] == release.nvidia_require_cuda, "the nvidia/cuda image's, brand clauses too"
    assert env["NVIDIA_REQUIRE_CUDA"].startswith("cuda>=11.7 brand=tesla,driver>=450,driver<451 ")
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert env["PYTORCH_VERSION"] == "2.0.1", "enroot's pytorch hook sets MASTER_ADDR and RANK only when it is set"


def locally_added_certificates(host_bundle: bytes) -> set[bytes]:
    """Certificates the host trusts beyond its distribution's public set (Debian/Ubuntu keep that set in
    /usr/share/ca-certificates): a TLS-intercepting proxy's CA is one of them. Public roots are not
    searched for, since certifi copies inside pip and requests legitimately carry them."""
    public = set()
    for path in Path("/usr/share/ca-certificates").rglob("*.crt"):
        public |= set(PEM_RE.findall(path.read_bytes()))
    return set(PEM_RE.findall(host_bundle)) - public if public else set()


def scan_layers(image, needles: list[bytes], bundle_digest: str) -> tuple[int, list[str]]:
    """Read every layer of a saved image: (how many layers were read, files holding a needle or the bundle)."""
    layers, hits = 0, []
    with tarfile.open(fileobj=_Stream(image.save(chunk_size=1 << 20)), mode="r|") as archive:
        for entry in archive:
            if not entry.isfile():
                continue
            try:
                with tarfile.open(fileobj=decompressed(archive.extractfile(entry)), mode="r|") as layer:
                    hits += [f"{entry.name}:{member.name}" for member in layer if member.isfile()
                             and _holds(layer.extractfile(member).read(), needles, bundle_digest)]
                layers += 1
            except tarfile.ReadError:
                continue  # a manifest or config: JSON, not a layer (the history is checked on its own)
    return layers, hits


def decompressed(stream):
    """A readable stream of a blob's tar bytes, whether stored as zstd (torchdev's builds), gzip or plain."""
    head = stream.read(4)
    whole = _Stream(iter([head]), rest=stream)
    if head == b"\x28\xb5\x2f\xfd":
        return zstandard.ZstdDecompressor().stream_reader(whole)
    if head[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=whole)
    return whole


def _holds(content: bytes, needles: list[bytes], bundle_digest: str) -> bool:
    return hashlib.sha256(content).hexdigest() == bundle_digest or any(needle in content for needle in needles)


class _Stream:
    """A file-like view of chunks (the SDK's save iterator), then optionally of another stream."""

    def __init__(self, chunks, rest=None):
        self.chunks, self.buffer, self.rest = iter(chunks), b"", rest

    def _next_chunk(self):
        chunk = next(self.chunks, None)
        if chunk is None and self.rest is not None:
            chunk = self.rest.read(1 << 20) or None
        return chunk

    def read(self, size=-1):
        while size < 0 or len(self.buffer) < size:
            chunk = self._next_chunk()
            if chunk is None:
                break
            self.buffer += chunk
        data, self.buffer = (self.buffer, b"") if size < 0 else (self.buffer[:size], self.buffer[size:])
        return data


def test_the_ca_bundle_never_lands_in_a_layer_or_the_history(docker_client, built_image):
    bundle_path = Path(os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE") or "")
    if not bundle_path.is_file():
        pytest.skip("this host passes no CA bundle to builds (no PIP_CERT / SSL_CERT_FILE)")
    host_bundle = bundle_path.read_bytes()
    needles = [certificate[:200] for certificate in locally_added_certificates(host_bundle)]
    image = docker_client.images.get(built_image.image_id)
    history = "\n".join(entry.get("CreatedBy", "") for entry in image.history())
    assert "BEGIN CERTIFICATE" not in history and "ca_bundle,src" not in history
    assert not any(needle.decode() in history for needle in needles)
    layers, hits = scan_layers(image, needles, hashlib.sha256(host_bundle).hexdigest())
    distinct_layers = len(set(image.attrs["RootFS"]["Layers"]))  # empty layers share one blob in a save
    assert layers >= distinct_layers, "some layers could not be read, so were not checked"
    assert hits == []


def test_a_second_build_with_nothing_changed_is_a_full_cache_hit(built_image, test_overlay):
    result = run_cli("build", "--variant", TEST_VARIANT, "--overlay", str(test_overlay))
    assert result.returncode == 0, result.stderr
    steps = re.findall(r"^#(\d+) \[runtime \d+/\d+\] (RUN|WORKDIR|USER)", result.stdout, re.M)
    assert steps, result.stdout
    for number, _ in steps:
        assert re.search(rf"^#{number} CACHED$", result.stdout, re.M), f"step #{number} ran again:\n{result.stdout}"
    assert built_image.image_id[:19] in result.stdout


def test_the_layer_scan_finds_a_bundle_that_did_land(docker_client, built_image, tracked_tags, tmp_path):
    """The control for the test above: a bundle copied in and deleted in a later layer is still found."""
    bundle_path = Path(os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt")
    base = docker_client.images.get(built_image.image_id).labels["org.opencontainers.image.base.name"]
    (tmp_path / "bundle.pem").write_bytes(bundle_path.read_bytes())
    (tmp_path / "Dockerfile").write_text(f"FROM {base}\nCOPY bundle.pem /etc/leaked.pem\nRUN rm /etc/leaked.pem\n")
    reference = tracked_tags.reference(f"{TEST_REPOSITORY}:leak-control")
    subprocess.run(["docker", "buildx", "build", f"--output={ENGINE_OUTPUT}", "--provenance=false", "-q",
                    "-t", reference, str(tmp_path)], check=True, capture_output=True)
    host_bundle = bundle_path.read_bytes()
    needles = [certificate[:200] for certificate in locally_added_certificates(host_bundle)]
    _, hits = scan_layers(docker_client.images.get(reference), needles, hashlib.sha256(host_bundle).hexdigest())
    assert [hit.split(":", 1)[1] for hit in hits] == ["etc/leaked.pem"]


def test_the_image_carries_its_manifest_and_a_copy_lands_beside_the_build_logs(containers, built_image, test_overlay):
    finished = containers.run(built_image.image_id, ["cat", "/usr/share/torchdev/manifest.json"])
    manifest = json.loads(finished.output)
    packages = {p["name"]: p["version"] for p in manifest["python"]["packages"]}
    assert packages["torch"] == "2.0.1" and packages["numpy"] == "1.26.4"
    assert manifest["torch_cuda_architectures"][-2:] == ["sm_80", "sm_86"], "read from torch without a GPU"
    require = load_matrix(ROOT / "images.yaml", overlay=str(test_overlay)).cuda_release("11.7").nvidia_require_cuda
    assert manifest["declared"] == {"variant": TEST_VARIANT, "torch": "2.0.1", "torchvision": "0.15.2",
                                    "torchaudio": "2.0.2", "cuda": "11.7", "cudnn-major": "8", "python": "3.11",
                                    "flavour": "runtime", "require-cuda": require, "platform": "linux/amd64",
                                    "left-out": "triton cmake lit"}
    assert manifest["base"]["image"] == "torchdev-base:bookworm"
    assert any(p["name"] == "python3" for p in manifest["debian_packages"])
    saved = Path(__file__).resolve().parents[2] / "reports" / "build" / f"{TEST_VARIANT}.manifest.json"
    assert json.loads(saved.read_text()) == manifest
    shown = run_cli("images", "--overlay", str(test_overlay), "--manifest", TEST_VARIANT)
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"^torch\s+2\.0\.1$", shown.stdout, re.M)


def test_images_lists_what_was_built_with_its_tags(built_image, test_overlay):
    shown = run_cli("images", "--overlay", str(test_overlay))
    assert shown.returncode == 0, shown.stderr
    row = next((line for line in shown.stdout.splitlines() if line.startswith(f"{TEST_VARIANT} ")), "")
    assert built_image.references[0].rsplit(":", 1)[1] in row and built_image.image_id[:19] in row, shown.stdout
