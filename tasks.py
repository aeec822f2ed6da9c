"""torchdev tasks (`./dev --list`). Thin on purpose: the logic lives in the torchdev package."""
import shlex
import sys

from invoke import task

from torchdev import commands
from torchdev.runner import run

OVERLAY_HELP = "overlay merged over images.yaml (default: $TORCHDEV_OVERLAY, else images.local.yaml if present)"


@task(help={"overlay": OVERLAY_HELP})
def matrix(c, overlay=None):
    """Show the matrix: variants, bases, versions, CUDA, indexes and the tags each build gets."""
    run(commands.show_matrix, overlay=overlay)


FLAVOUR_HELP = ("flavour(s), e.g. devel or runtime,devel (default: runtime with --variant, every flavour with "
               "--all)")
UNLOCKED_HELP = ("build a variant that has no lock, letting pip resolve at build time with nothing hash-pinned "
                 "(shown in the table, recorded in the image's manifest); without it such a build is refused")
PLATFORM_HELP = ("platform(s), e.g. linux/arm64 or linux/amd64,linux/arm64, or all (every one the variant declares); "
                 "default: this host's own when the variant has it, else the variant's first")


@task(help={"variant": "variant(s) to build, e.g. cu118 or cpu,cu118", "all_": "build every variant in every flavour",
            "flavour": FLAVOUR_HELP, "dry_run": "print the exact build plan and build nothing", "overlay": OVERLAY_HELP,
            "no_cache": "rebuild every layer (downloads stay cached)",
            "reproducible": "accepted and ignored: every build is reproducible (kept for existing scripts)",
            "platform": PLATFORM_HELP, "unlocked": UNLOCKED_HELP})
def build(c, variant=None, all_=False, flavour=None, dry_run=False, overlay=None, no_cache=False, reproducible=False,
          platform=None, unlocked=False):
    """Build images with BuildKit; tags move only after a build fully succeeds (one multi-platform image per tag)."""
    run(commands.build, variant=variant, every=all_, dry_run=dry_run, overlay=overlay, no_cache=no_cache,
        reproducible=reproducible, flavour=flavour, platform=platform, unlocked=unlocked)


@task(help={"variant": "variant(s) to lock, e.g. cu118 or cpu,cu118", "all_": "every variant",
            "check": "compare each lock with the matrix, write nothing; exit 1 on drift", "overlay": OVERLAY_HELP,
            "platform": "platform(s) to lock, e.g. linux/arm64 (default: every platform the variant declares)"})
def lock(c, variant=None, all_=False, check=False, overlay=None, platform=None):
    """Resolve each variant's full Python closure into a hash-pinned lock per platform (locks/<variant>.txt for
    linux/amd64, locks/<variant>.linux-arm64.txt, or next to its `lock:`)."""
    run(commands.lock, variant=variant, every=all_, check=check, overlay=overlay, platform=platform)


@task(help={"variant": "variant to check", "overlay": OVERLAY_HELP, "unlocked": UNLOCKED_HELP})
def verify_repro(c, variant, overlay=None, unlocked=False):
    """Build a variant twice with no layer cache: one image ID, or a report of the layers and files that differ."""
    run(commands.verify_repro, variant=variant, overlay=overlay, unlocked=unlocked)


@task(help={"overlay": OVERLAY_HELP, "manifest": "show what is inside this variant's image",
            "flavour": "with --manifest, --sbom or --provenance: the flavour's image (default runtime)",
            "sbom": "the variant's SBOM (SPDX 2.3 JSON): every Debian and Python package, the base, the image",
            "provenance": "the variant's SLSA v1 provenance statement: parameters, commit, locks, base, builder",
            "out": "with --sbom or --provenance: write it to this file instead of printing it"})
def images(c, overlay=None, manifest=None, flavour=None, sbom=None, provenance=None, out=None):
    """List built torchdev images: variant, flavour, tags, on-disk and download sizes, created, digest."""
    run(commands.list_images, overlay=overlay, manifest=manifest, flavour=flavour, sbom=sbom, provenance=provenance,
        out=out)


@task(help={"name": "image name for the local Debian base",
            "platform": "platform(s), e.g. linux/amd64,linux/arm64 (default: this host's); one multi-platform image"})
def base(c, name="torchdev-base:bookworm", platform=None):
    """Make a local Debian base image from Debian packages (for hosts without a registry), unless it holds every
    platform asked for already."""
    run(commands.base, name=name, platform=platform)


@task(help={"unit": "only the fast unit tests (no Docker)"})
def test(c, unit=False):
    """Run the host-side tests: unit tests, then integration tests on the real engine (the 25 slowest listed: CI's
    time is a budget)."""
    c.run(f"{shlex.quote(sys.executable)} -m pytest tests/unit" + ("" if unit else " tests/integration --durations=25"),
          pty=False)


@task(help={"variant": "image to train on (default cpu)", "overlay": OVERLAY_HELP, "unlocked": UNLOCKED_HELP})
def up(c, variant="cpu", overlay=None, unlocked=False):
    """Build the variant's image, then train in it: `docker compose run --rm train`."""
    run(commands.up, variant=variant, overlay=overlay, unlocked=unlocked)


@task(help={"variant": "variant(s) to check, e.g. cu118 or cpu,cu118", "all_": "every variant in every flavour",
            "flavour": FLAVOUR_HELP,
            "gpus": "auto (every GPU the engine offers, to CUDA variants only), all, none, or a count",
            "build": "build a missing image first", "overlay": OVERLAY_HELP,
            "reports": "folder for JUnit XML and JSON summaries (default reports/smoke)",
            "platform": PLATFORM_HELP + "; each is run, emulated where not native",
            "checks": "only these checks, e.g. environment,convergence (default: all)",
            "unlocked": "with --build: " + UNLOCKED_HELP})
def smoke(c, variant=None, all_=False, flavour=None, gpus="auto", build=False, overlay=None, reports=None,
          platform=None, checks=None, unlocked=False):
    """Run the smoke suite (smoke/, mounted read-only) inside built images; one table of checks at the end."""
    run(commands.run_smoke, variant=variant, every=all_, gpus=gpus, build_missing=build, overlay=overlay,
        reports=reports, flavour=flavour, platform=platform, checks=checks, unlocked=unlocked)


@task(help={"overlay": OVERLAY_HELP})
def doctor(c, overlay=None):
    """Check this host: engine, buildx, Compose v2, GPU runtime, driver per CUDA variant, /dev/shm, disk."""
    run(commands.doctor, overlay=overlay)


@task(help={"container": "the dev or compose container, running or stopped (default: this checkout's one)",
            "write": "declare them as the variant's added_packages (the overlay, else images.yaml), lock them, build",
            "overlay": OVERLAY_HELP})
def capture(c, container=None, write=False, overlay=None):
    """List the packages a dev or compose container's users installed beyond its image; --write takes them into
    the image (declared, locked apart, built: only the images' last step runs again)."""
    run(commands.capture, container=container, write=write, overlay=overlay)


@task(help={"variant": "variant(s) whose base to pin", "all_": "every variant", "overlay": OVERLAY_HELP})
def pin(c, variant=None, all_=False, overlay=None):
    """Pin bases by digest (name:tag@sha256:...) where they are declared, asking their registries."""
    run(commands.pin, variant=variant, every=all_, overlay=overlay)


@task(help={"variant": "variant(s) whose base to save", "all_": "every variant", "overlay": OVERLAY_HELP,
            "to_registry": "registry and prefix to push copies to, e.g. registry.corp:5000/mirror",
            "to_archive": "folder to write one docker-load archive per base into"})
def save_bases(c, variant=None, all_=False, overlay=None, to_registry=None, to_archive=None):
    """Copy pinned bases to a registry or archives you control, before upstream deletes them."""
    run(commands.save_bases, variant=variant, every=all_, overlay=overlay, to_registry=to_registry,
        to_archive=to_archive)


@task(help={"variant": "variant(s) to push, e.g. cu118 or cpu,cu118", "all_": "every variant",
            "flavour": "flavour(s) to push (default: every flavour)", "overlay": OVERLAY_HELP,
            "to": "registry repository, e.g. registry.corp:5000/ml/torchdev (default: images.yaml's repository)",
            "compression": "layer compression: gzip (default; every engine pulls it) or zstd (Docker 23+, "
                           "containerd 1.5+)",
            "force": "push even when the image's last smoke run did not pass on it",
            "sign": "cosign private key: sign each pushed digest and attach its SBOM and provenance (the key's "
                    "password from COSIGN_PASSWORD)",
            "tlog": "with --sign: upload to the public transparency log (Rekor; needs the internet)"})
def push(c, variant=None, all_=False, flavour=None, overlay=None, to=None, compression="gzip", force=False, sign=None,
         tlog=False):
    """Push built images with every tag; print and record (reports/push/) the digest each tag names."""
    run(commands.push, variant=variant, every=all_, flavour=flavour, overlay=overlay, to=to, compression=compression,
        force=force, sign=sign, tlog=tlog)


@task(help={"reference": "the pushed image, REGISTRY/NAME:TAG or REGISTRY/NAME@sha256:...",
            "key": "the cosign public key (cosign.pub) it must be signed with",
            "tlog": "also require the transparency log entry (for images signed with push --sign --tlog)"})
def verify(c, reference, key, tlog=False):
    """Check a pushed image's signature, SBOM and provenance against a public key: who signed, when, which commit
    and lock; or one line with the cause."""
    run(commands.verify, reference=reference, key=key, tlog=tlog)


@task(help={"variant": "variant whose pushed image the job builds on, e.g. cu118",
            "image": "the job image by digest (NAME@sha256:...); without it, write its Dockerfile instead",
            "nodes": "pods, one per node (default 2; an Indexed Job runs at most 100000)",
            "gpus": "GPUs per node, one process each (default 1 for a CUDA variant, 0 for cpu)",
            "nproc": "processes per node without GPUs (default 1)",
            "name": "job name (default torchdev-VARIANT)", "shm_size": "/dev/shm per pod (default 2Gi)",
            "cpu": "CPUs each pod requests (default: one per process)",
            "memory": "memory each pod requests (default: 4Gi per process plus --shm-size)",
            "train_args": "train/train.py's flags (default '--task mlp')",
            "out": "folder to write into (default reports/k8s/NAME)", "overlay": OVERLAY_HELP,
            "policy_key": "cosign public key: also write a sigstore policy-controller ClusterImagePolicy requiring "
                          "it"})
def k8s(c, variant, image=None, nodes=None, gpus=None, nproc=None, name=None, shm_size="2Gi", train_args="--task mlp",
        out=None, overlay=None, cpu=None, memory=None, policy_key=None):
    """Kubernetes manifests for train/train.py: a Kubeflow PyTorchJob and an Indexed Job, the image by digest."""
    run(commands.k8s, variant=variant, image=image, nodes=nodes, gpus=gpus, nproc=nproc, name=name, shm_size=shm_size,
        train_args=train_args, out=out, overlay=overlay, cpu=cpu, memory=memory, policy_key=policy_key)
