"""linux/arm64 for real, under qemu: the test overlay's cpu variant (arm64 only: PyPI's aarch64 torch 2.0.1 is a CPU
build) is built on this amd64 engine from its arm64 lock, on the arm64 half of the multi-platform local base; the
image's architecture, `uname -m` in it, the smoke suite's environment and convergence checks in it, and a push of it
(its per-platform smoke result as the gate) to a real registry are checked. The multi-platform base itself, copied
with zstd layers and pushed, serves each platform to a pull of its own.

Emulated, so chosen: the DDP, shm and GPU checks are left out (gloo over emulated syscalls costs minutes and proves
nothing about the platform). What is not proven here: speed on real arm64 hardware, and the amd64 half of a cpu image
(download.pytorch.org, where it comes from, is out of reach). .ci/run prints what this module cost."""
from __future__ import annotations

import hashlib
import json
import subprocess
import time
import urllib.request

import pytest

from smoke.smoke_contract import read_summary
from tests.helpers.cli import ROOT, run_cli, unavailable
from tests.helpers.timings import record
from tests.helpers.variants import TEST_REPOSITORY
from torchdev.records import read_push_record

VARIANT = "cpu"
REPOSITORY = f"{TEST_REPOSITORY}-arm64"  # its own: the module's teardown removes the whole repository
BASE = "torchdev-base:bookworm"
INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="module")
def arm64_overlay(test_overlay, tmp_path_factory):
    import yaml

    data = yaml.safe_load(test_overlay.read_text())
    data["image"]["repository"] = REPOSITORY
    path = tmp_path_factory.mktemp("arm64") / "overlay.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def arm64_image(docker_client, arm64_overlay):
    """The cpu variant built for linux/arm64 once per module (emulated); its tags removed at the end."""
    from tests.helpers.tags import TrackedTags
    from torchdev.engine import Engine
    from torchdev.matrix import load_matrix
    from torchdev.checkout import read_plans
    from torchdev.project import Paths

    if subprocess.run(["bash", str(ROOT / "scripts" / "emulation.sh"), "status"], capture_output=True).returncode:
        unavailable("linux/arm64 binaries do not run here: scripts/emulation.sh enable")
    if Engine(docker_client).image_platforms(BASE, ("linux/arm64",)) != ("linux/arm64",):
        unavailable(f"{BASE} has no linux/arm64 half: ./dev base --platform linux/amd64,linux/arm64")
    tracked = TrackedTags(docker_client)
    tracked.repository(REPOSITORY)
    started = time.monotonic()
    result = run_cli("build", "--variant", VARIANT, "--overlay", str(arm64_overlay), timeout=2400)
    record("arm64 (emulated) cpu build", time.monotonic() - started)
    assert result.returncode == 0, f"the arm64 image did not build:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}"
    matrix = load_matrix(ROOT / "images.yaml", overlay=str(arm64_overlay))
    references = read_plans(Paths.at(ROOT), matrix, [matrix.variant(VARIANT)])[0].references
    yield docker_client.images.get(references[0]), references, result.stdout
    assert tracked.remove_all() == []


def test_a_variant_without_this_hosts_platform_builds_its_own_under_emulation_and_says_so(arm64_image):
    image, _, output = arm64_image
    assert "note: cpu: linux/arm64 is not this host's platform (linux/amd64): it builds and runs under emulation" \
        in output
    assert "building cpu for linux/arm64 as" in output
    assert (image.attrs["Os"], image.attrs["Architecture"]) == ("linux", "arm64")


def test_inside_the_arm64_image_uname_says_aarch64_and_the_manifest_names_the_platform_and_its_lock(
        arm64_image, containers):
    image, _, _ = arm64_image
    probe = containers.run(image.id, ["bash", "-c", "uname -m; cat /usr/share/torchdev/manifest.json"],
                           platform="linux/arm64", timeout=300)
    assert probe.exit_code == 0, probe.output
    machine, _, manifest = probe.output.partition("\n")
    assert machine == "aarch64"
    manifest = json.loads(manifest)
    lock = ROOT / "overlays" / "local-debian" / "cpu.lock.linux-arm64.txt"
    assert manifest["declared"]["platform"] == "linux/arm64"
    assert manifest["lock_sha256"] == hashlib.sha256(lock.read_bytes()).hexdigest()


def test_the_environment_and_convergence_checks_pass_in_the_arm64_image(arm64_image, arm64_overlay):
    started = time.monotonic()
    result = run_cli("smoke", "--variant", VARIANT, "--platform", "linux/arm64", "--checks", "environment,convergence",
                     "--overlay", str(arm64_overlay), timeout=1800)
    record("arm64 (emulated) smoke: environment + convergence", time.monotonic() - started)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    summary = read_summary(ROOT / "reports" / "smoke" / f"{VARIANT}.linux-arm64.json")
    by_name = {check.nodeid.split("::")[-1]: check.outcome for check in summary.checks}
    assert by_name["test_machine_matches_platform"] == "passed"
    assert by_name["test_mlp_classifier_reaches_95_percent_accuracy[cpu]"] == "passed"
    assert {check.check for check in summary.checks} == {"environment", "convergence"}


def test_the_arm64_image_is_pushed_with_its_platform_once_its_own_smoke_run_passed(
        arm64_image, arm64_overlay, registry, tracked_tags):
    repository = tracked_tags.repository(f"{registry}/ml/arm")
    # gzip: the layers as stored (the copy of a multi-platform image is the last test's)
    result = run_cli("push", "--variant", VARIANT, "--flavour", "runtime", "--overlay", str(arm64_overlay),
                     "--to", repository, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    report = read_push_record(ROOT / "reports" / "push" / f"{VARIANT}.json")
    assert report.platforms == ("linux/arm64",) and report.digest == arm64_image[0].id, "gzip goes as stored"
    manifest = remote(registry, "ml/arm", report.digest, OCI_MANIFEST)
    config = remote(registry, "ml/arm", manifest["config"]["digest"], "*/*", kind="blobs")
    assert config["architecture"] == "arm64"


def remote(registry: str, path: str, reference: str, accept: str, *, kind: str = "manifests") -> dict:
    request = urllib.request.Request(f"http://{registry}/v2/{path}/{kind}/{reference}", headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def test_a_multi_platform_image_goes_out_as_a_zstd_copy_in_one_index_and_each_platform_pulls_its_own(
        registry, docker_client, tracked_tags, containers):
    """The zstd copy of the two-platform local base, pushed: one tag, one index, zstd layers per platform."""
    from torchdev.engine import Engine
    from torchdev.oci import recompressed_copy

    repository = tracked_tags.repository(f"{registry}/ml/base")
    engine = Engine.connect()
    try:
        copy = recompressed_copy(engine, BASE, name=f"{repository}:multi", compression="zstd")
        engine.push(f"{repository}:multi")
        assert engine.remote_digest(f"{repository}:multi") == copy.digest
    finally:
        engine.close()
    index = remote(registry, "ml/base", copy.digest, INDEX)
    assert index["mediaType"] == INDEX
    platforms = {f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"] for m in index["manifests"]}
    assert set(platforms) == {"linux/amd64", "linux/arm64"}
    for digest in platforms.values():
        layers = remote(registry, "ml/base", digest, OCI_MANIFEST)["layers"]
        assert {layer["mediaType"] for layer in layers} == {"application/vnd.oci.image.layer.v1.tar+zstd"}
    docker_client.images.remove(f"{repository}:multi")
    for platform, machine in (("linux/arm64", "aarch64"), ("linux/amd64", "x86_64")):
        pulled = docker_client.images.pull(f"{repository}@{copy.digest}", platform=platform)
        assert containers.run(pulled.id, ["uname", "-m"], platform=platform).output.strip() == machine
        docker_client.images.remove(pulled.id, force=True)
