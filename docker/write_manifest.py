"""Build-time inventory of an image, printed as JSON (the Dockerfile stores it in /usr/share/torchdev).

It answers "what exactly is in this image?" without running pip or dpkg inside it: Python distributions
with their versions and the hash of each one's installed-file list (RECORD), Debian packages with their
versions, the base image, the apt snapshot the Debian packages came from, the lock the Python ones came from (or
`"unlocked": true`: built with --unlocked, nothing hash-pinned),
and what images.yaml declared the image must contain (read by the smoke suite when it runs inside the image).
"""
import argparse
import hashlib
import json
import subprocess
import sys
from importlib import metadata


def python_packages() -> list[dict]:
    """Every distribution in this interpreter's environment, sorted, with a fingerprint of its files."""
    packages = []
    for dist in metadata.distributions():
        record = dist.read_text("RECORD") or ""
        packages.append({"name": dist.metadata["Name"], "version": dist.version,
                         "record_sha256": hashlib.sha256(record.encode()).hexdigest()})
    return sorted(packages, key=lambda package: package["name"].lower())


def torch_cuda_architectures() -> list[str]:
    """The GPU architectures torch's kernels were built for (sm_86, compute_86, ...), asked without a GPU
    (torch.cuda.get_arch_list() says [] when none is visible): `./dev doctor` compares them with the host's GPUs."""
    try:
        import torch
    except ImportError:
        return []
    return torch._C._cuda_getArchFlags().split() if torch.version.cuda else []


def debian_packages() -> list[dict]:
    output = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\\t${Version}\\t${Architecture}\\n"],
                            capture_output=True, text=True, check=True).stdout
    rows = (line.split("\t") for line in output.splitlines() if line)
    return [{"name": name, "version": version, "architecture": arch} for name, version, arch in sorted(rows)]


def updated(path: str, declared: dict) -> dict:
    """A stage built on another (devel on runtime) keeps its manifest, with the new declarations and what is
    installed now; a declaration given empty is dropped."""
    with open(path) as file:
        manifest = json.load(file)
    merged = {**manifest["declared"], **declared}
    manifest["declared"] = {name: value for name, value in merged.items() if value}
    manifest["python"]["packages"] = python_packages()
    manifest["debian_packages"] = debian_packages()
    return manifest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--update", metavar="MANIFEST", help="print MANIFEST with --declared and the packages updated")
    parser.add_argument("--base", default="")
    parser.add_argument("--base-digest", default="")
    parser.add_argument("--lock-sha256", default="")
    parser.add_argument("--unlocked", action="store_true",
                        help="the build had no lock (./dev build --unlocked): nothing pip installed was hash-pinned")
    parser.add_argument("--apt-snapshot", default="", help="APT_SNAPSHOT's archive=URL words; empty: live archives")
    parser.add_argument("--declared", action="append", default=[], metavar="NAME=VALUE",
                        help="what images.yaml declares for the image (torch, cuda, ...); the smoke suite run inside "
                             "the image without --expect-NAME options checks against these; empty values are left out")
    args = parser.parse_args()
    declared = dict(item.split("=", 1) for item in args.declared)
    if args.update:
        json.dump(updated(args.update, declared), sys.stdout, indent=1, sort_keys=True)
        print()
        return 0
    if not args.base:
        parser.error("--base is required (unless --update)")
    manifest = {
        "declared": {name: value for name, value in declared.items() if value},
        "base": {"image": args.base, "digest": args.base_digest or None},
        "lock_sha256": args.lock_sha256 or None,
        "unlocked": args.unlocked,
        "apt_snapshot": dict(word.split("=", 1) for word in args.apt_snapshot.split()) or None,
        "python": {"version": "%d.%d.%d" % sys.version_info[:3], "packages": python_packages()},
        "torch_cuda_architectures": torch_cuda_architectures(),
        "debian_packages": debian_packages(),
    }
    json.dump(manifest, sys.stdout, indent=1, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
