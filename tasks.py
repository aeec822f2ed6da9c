"""torchdev tasks (`./dev --list`). Thin on purpose: the logic lives in the torchdev package.

Each task's docstring starts with one line, a whole sentence, that `./dev --list` shows (invoke shows a docstring's
first line only); the rest of it is what `./dev TASK --help` adds.
"""
import shlex
import sys
from pathlib import Path

from invoke import task

from torchdev import commands
from torchdev.runner import run

ROOT = Path(__file__).resolve().parent
OVERLAY_HELP = "overlay merged over images.yaml (default: $TORCHDEV_OVERLAY, else images.local.yaml if present)"


WIDE_HELP = "one line per row, however long (default: fit the terminal's width, $COLUMNS)"


@task(help={"overlay": OVERLAY_HELP, "wide": WIDE_HELP + ", with every column"})
def matrix(c, overlay=None, wide=False):
    """Show the matrix: variants, versions, CUDA, locks and tags.

    On a terminal, the columns that fit its width (--wide: bases, indexes, apt snapshots, toolchains and every tag
    too, one line per image); piped or redirected, every column.
    """
    run(commands.show_matrix, overlay=overlay, wide=wide)


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
    """Build images with BuildKit (--dry-run: the plan alone).

    Tags move only after a build fully succeeds (one multi-platform image per tag). --dry-run checks what a build
    checks first (the locks) and prints the exact plan: build args, tags, secrets, the buildx command.
    """
    run(commands.build, variant=variant, every=all_, dry_run=dry_run, overlay=overlay, no_cache=no_cache,
        reproducible=reproducible, flavour=flavour, platform=platform, unlocked=unlocked)


@task(help={"variant": "variant(s) to lock, e.g. cu118 or cpu,cu118 (default: every variant)",
            "all_": "every variant (the default)",
            "check": "compare each lock with the matrix, write nothing; exit 1 on drift", "overlay": OVERLAY_HELP,
            "platform": "platform(s) to lock, e.g. linux/arm64 (default: every platform the variant declares)"})
def lock(c, variant=None, all_=False, check=False, overlay=None, platform=None):
    """Resolve the variants' Python packages into hash-pinned locks.

    One lock per variant and platform (the wheels differ): locks/<variant>.txt for linux/amd64,
    locks/<variant>.linux-arm64.txt, or next to the variant's `lock:`. Every variant unless --variant names some.
    """
    run(commands.lock, variant=variant, every=all_, check=check, overlay=overlay, platform=platform)


@task(help={"variant": "variant to check", "overlay": OVERLAY_HELP, "unlocked": UNLOCKED_HELP})
def verify_repro(c, variant, overlay=None, unlocked=False):
    """Build a variant twice, uncached: one image, or what differs.

    Exit 0 only when both builds give one image ID (and the one images.yaml records, if it records one);
    otherwise each differing layer and, in it, each differing file.
    """
    run(commands.verify_repro, variant=variant, overlay=overlay, unlocked=unlocked)


@task(help={"overlay": OVERLAY_HELP, "manifest": "show what is inside this variant's image",
            "flavour": "with --manifest, --sbom or --provenance: the flavour's image (default runtime)",
            "sbom": "the variant's SBOM (SPDX 2.3 JSON): every Debian and Python package, the base, the image",
            "provenance": "the variant's SLSA v1 provenance statement: parameters, commit, locks, base, builder",
            "out": "with --sbom or --provenance: write it to this file instead of printing it"})
def images(c, overlay=None, manifest=None, flavour=None, sbom=None, provenance=None, out=None):
    """List built images, or show one's manifest, SBOM, provenance.

    The list: variant, flavour, tags, on-disk and download sizes, created, digest.
    """
    run(commands.list_images, overlay=overlay, manifest=manifest, flavour=flavour, sbom=sbom, provenance=provenance,
        out=out)


@task(help={"name": "image name for the local Debian base",
            "platform": "platform(s), e.g. linux/amd64,linux/arm64 (default: this host's); one multi-platform image"})
def base(c, name="torchdev-base:bookworm", platform=None):
    """Make a local Debian base image, for hosts without a registry.

    From Debian packages (mmdebstrap), unless the image holds every platform asked for already.
    """
    run(commands.base, name=name, platform=platform)


@task(help={"unit": "only the fast unit tests (no Docker)"})
def test(c, unit=False):
    """Run the tests: unit, then integration on the Docker engine.

    The integration tests build and run images on the real engine (the 25 slowest are listed: CI's time is a
    budget). --unit: the unit tests alone, no Docker, about half a minute.
    """
    with c.cd(shlex.quote(str(ROOT))):
        c.run(f"{shlex.quote(sys.executable)} -m pytest tests/unit" +
              ("" if unit else " tests/integration --durations=25"), pty=False)


GPUS_HELP = "auto (every GPU the engine offers, to CUDA variants only), all, none, or a count"


@task(help={"variant": "image to train on (default cpu)", "overlay": OVERLAY_HELP,
            "gpus": GPUS_HELP + " (compose.gpu.yaml)", "unlocked": UNLOCKED_HELP})
def up(c, variant="cpu", overlay=None, gpus="auto", unlocked=False):
    """Build a variant's image, then train in it (docker compose).

    `docker compose run --rm train`, with compose.gpu.yaml added when the run gets GPUs (--gpus, as for smoke).
    """
    run(commands.up, variant=variant, overlay=overlay, gpus=gpus, unlocked=unlocked)


@task(help={"variant": "variant(s) to check, e.g. cu118 or cpu,cu118", "all_": "every variant in every flavour",
            "flavour": FLAVOUR_HELP,
            "gpus": GPUS_HELP,
            "build": "build a missing image first", "overlay": OVERLAY_HELP,
            "reports": "folder for JUnit XML and JSON summaries (default reports/smoke)",
            "platform": PLATFORM_HELP + "; each is run, emulated where not native",
            "checks": "only these checks, e.g. environment,convergence (default: all)",
            "unlocked": "with --build: " + UNLOCKED_HELP})
def smoke(c, variant=None, all_=False, flavour=None, gpus="auto", build=False, overlay=None, reports=None,
          platform=None, checks=None, unlocked=False):
    """Run the smoke suite inside built images.

    smoke/ is mounted read-only into each image; one table of checks at the end, JUnit XML and a JSON summary per
    image under --reports.
    """
    run(commands.run_smoke, variant=variant, every=all_, gpus=gpus, build_missing=build, overlay=overlay,
        reports=reports, flavour=flavour, platform=platform, checks=checks, unlocked=unlocked)


@task(help={"overlay": OVERLAY_HELP, "wide": WIDE_HELP})
def doctor(c, overlay=None, wide=False):
    """Check this host: engine, GPUs, drivers, shared memory, disk.

    The engine, buildx, Compose v2, the GPU route, the driver and kernels per CUDA variant, /dev/shm, locked memory
    and disk; a warning or a failure carries its fix.
    """
    run(commands.doctor, overlay=overlay, wide=wide)


@task(help={"container": "the dev or compose container, running or stopped (default: this checkout's one)",
            "write": "declare them as the variant's added_packages (the overlay, else images.yaml), lock them, build",
            "overlay": OVERLAY_HELP})
def capture(c, container=None, write=False, overlay=None):
    """List what a container's users pip-installed beyond its image.

    --write takes them into the image: declared as the variant's added_packages, locked apart from its lock, built
    (only the images' last step runs again).
    """
    run(commands.capture, container=container, write=write, overlay=overlay)


@task(help={"variant": "variant(s) whose base to pin", "all_": "every variant", "overlay": OVERLAY_HELP})
def pin(c, variant=None, all_=False, overlay=None):
    """Pin each base by digest where it is declared.

    name:tag@sha256:..., asking each base's registry.
    """
    run(commands.pin, variant=variant, every=all_, overlay=overlay)


@task(help={"variant": "variant(s) whose base to save", "all_": "every variant", "overlay": OVERLAY_HELP,
            "to_registry": "registry and prefix to push copies to, e.g. registry.corp:5000/mirror",
            "to_archive": "folder to write one docker-load archive per base into"})
def save_bases(c, variant=None, all_=False, overlay=None, to_registry=None, to_archive=None):
    """Copy pinned bases to a registry or archives you control.

    Upstream deletes old bases (NVIDIA, end-of-life CUDA tags): a copy of your own keeps old images rebuildable.
    """
    run(commands.save_bases, variant=variant, every=all_, overlay=overlay, to_registry=to_registry,
        to_archive=to_archive)


@task(help={"variant": "variant(s) to push, e.g. cu118 or cpu,cu118", "all_": "every variant",
            "flavour": "flavour(s) to push (default: every flavour)", "overlay": OVERLAY_HELP,
            "to": "registry repository, e.g. registry.corp:5000/ml/torchdev (default: images.yaml's repository)",
            "compression": "layer compression: gzip (default; every engine pulls it; the image as built and "
                           "tested, its ID the pushed digest) or zstd (a copy: smaller, faster to pull; Docker 23+, "
                           "containerd 1.5+)",
            "force": "push even when the image's last smoke run did not pass on it",
            "sign": "cosign private key: sign each pushed digest and attach its SBOM and provenance (the key's "
                    "password from COSIGN_PASSWORD)",
            "tlog": "with --sign: upload to the public transparency log (Rekor; needs the internet)"})
def push(c, variant=None, all_=False, flavour=None, overlay=None, to=None, compression="gzip", force=False, sign=None,
         tlog=False):
    """Push built images with every tag, and record each digest.

    One line per tag with the digest it names; reports/push/<image>.json once every tag is in the registry.
    """
    run(commands.push, variant=variant, every=all_, flavour=flavour, overlay=overlay, to=to, compression=compression,
        force=force, sign=sign, tlog=tlog)


@task(help={"reference": "the pushed image, REGISTRY/NAME:TAG or REGISTRY/NAME@sha256:...",
            "key": "the cosign public key (cosign.pub) it must be signed with",
            "tlog": "also require the transparency log entry (for images signed with push --sign --tlog)"})
def verify(c, reference, key, tlog=False):
    """Check a pushed image's signature, SBOM and provenance.

    Against a public key: who signed, when, which commit and lock; or one line with the cause.
    """
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
    """Write Kubernetes jobs (PyTorchJob, Indexed Job) for training.

    For train/train.py: a Kubeflow PyTorchJob and an Indexed Job, the image by digest. Without --image: the job
    image's Dockerfile, FROM the pushed torchdev image.
    """
    run(commands.k8s, variant=variant, image=image, nodes=nodes, gpus=gpus, nproc=nproc, name=name, shm_size=shm_size,
        train_args=train_args, out=out, overlay=overlay, cpu=cpu, memory=memory, policy_key=policy_key)
