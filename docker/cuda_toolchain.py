"""Install nvcc and the CUDA headers of one CUDA release into a CUDA_HOME, from NVIDIA's redistributable archives.

    python cuda_toolchain.py --url URL --release 11.7.1 --component cuda_nvcc --component cuda_cudart \
        --prefix /usr/local/cuda-11.7 [--manifest-sha256 HEX] [--cache DIR]

NVIDIA publishes each CUDA release as per-component tarballs (redist/redistrib_<release>.json lists them with
their sha256). nvcc from there, rather than from PyPI (nvidia-cuda-nvcc-cu11 ships ptxas and libnvvm but no nvcc,
cicc or cudafe++) or from an nvidia/cuda devel base (a second copy of every CUDA library torch already brings):
a few hundred MB of exactly the release the variant declares, on any base. The headers of the libraries torch's
wheels bring (cuBLAS, cuSPARSE, ... under site-packages/nvidia/*/include) are linked into the same include folder,
so torch.utils.cpp_extension finds everything under CUDA_HOME.

Nothing is installed unverified: each archive must have the sha256 the manifest gives, and the manifest itself must
come over https (the server proves who it is), or have the sha256 images.yaml pins for it (--manifest-sha256,
cuda_releases' redistrib_sha256), which then holds over any URL: an http mirror or a file. A hash taken from the same
plain-http server as the archives would prove nothing. A mirror's login comes from the build's netrc secret (NETRC),
sent to that host alone (index_login.py, mounted beside this file, reads and sends it).
"""
import argparse
import hashlib
import json
import os
import shutil
import sys
import tarfile
import urllib.error
from pathlib import Path
from urllib.parse import urlsplit

from index_login import login_for, open_with_login


def fail(message):
    print(f"torchdev: {message}", file=sys.stderr)
    sys.exit(1)


def fetch(url):
    """The bytes at `url`, trusting the build's CA bundle secret when there is one, with the netrc secret's login for
    its host (never sent on when the server redirects elsewhere)."""
    host = (urlsplit(url).hostname or "").lower()
    login = login_for(host)
    try:
        with open_with_login(url, login, timeout=120) as response:
            return response.read()
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            said = "refused the login the build was given for" if login else "asks for a login the build was not given for"
            fail(f"{url} {said} {host} (HTTP {error.code}): put `machine {host} login USER password TOKEN` in ~/.netrc "
                 "or the file $NETRC names (docs/security.md, Credentials)")
        fail(f"cannot download {url} (HTTP {error.code}): make NVIDIA's redistributables reachable from the build, "
             "point flavours.<flavour>.cuda_toolchain at a mirror, or set it to null in an overlay (README, Flavours)")
    except OSError as error:
        fail(f"cannot download {url} ({error}): make NVIDIA's redistributables reachable from the build, point "
             "flavours.<flavour>.cuda_toolchain at a mirror, or set it to null in an overlay (README, Flavours)")


def platform_key():
    return {"x86_64": "linux-x86_64", "aarch64": "linux-sbsa"}[os.uname().machine]


def archive_entry(manifest, component, release):
    entry = manifest.get(component, {}).get(platform_key())
    if not entry:
        fail(f"CUDA {release} has no {component} for {platform_key()} in NVIDIA's redistributables")
    return entry


def download_checked(base_url, entry, cache):
    """The archive, from the cache or the server, refused unless its sha256 is the manifest's."""
    path = cache / Path(entry["relative_path"]).name
    data = path.read_bytes() if path.is_file() else fetch(f"{base_url}/{entry['relative_path']}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry["sha256"]:
        path.unlink(missing_ok=True)
        fail(f"{entry['relative_path']} has sha256 {digest}, NVIDIA's manifest says {entry['sha256']}: "
             "a broken download or mirror")
    cache.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def extract_into(archive, prefix):
    """Unpack one component archive, dropping its top folder, so every component merges into one tree."""
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            parts = Path(member.name).parts[1:]
            if not parts or member.isdev():
                continue
            member.name = str(Path(*parts))
            if hasattr(tarfile, "data_filter"):  # PEP 706: no member may land outside the prefix
                tar.extract(member, prefix, filter="tar")
            else:
                tar.extract(member, prefix)


def link_wheel_headers(prefix, site_packages):
    """Headers of NVIDIA's pip wheels (site-packages/nvidia/<lib>/include) into CUDA_HOME/include, where
    cpp_extension looks; headers the archives brought win."""
    include = prefix / "include"
    include.mkdir(parents=True, exist_ok=True)
    for header in sorted(site_packages.glob("nvidia/*/include/*")):
        target = include / header.name
        if not target.exists() and not target.is_symlink():
            target.symlink_to(header)


def checked_manifest(base_url, release, pinned):
    """NVIDIA's redistrib_<release>.json, refused unless it came over https or has the pinned sha256."""
    if not pinned and urlsplit(base_url).scheme != "https":
        fail(f"{base_url} is not https and images.yaml pins no sha256 for redistrib_{release}.json, so nothing would "
             f"prove the archives are NVIDIA's: use an https:// URL, or add redistrib_sha256 under cuda_releases")
    data = fetch(f"{base_url}/redistrib_{release}.json")
    digest = hashlib.sha256(data).hexdigest()
    if pinned and digest != pinned:
        fail(f"redistrib_{release}.json from {base_url} has sha256 {digest}, images.yaml pins {pinned}: a changed "
             "manifest or a broken mirror")
    return json.loads(data)


def install(args):
    base_url = args.url.rstrip("/")
    manifest = checked_manifest(base_url, args.release, args.manifest_sha256)
    for component in args.component:
        entry = archive_entry(manifest, component, args.release)
        extract_into(download_checked(base_url, entry, args.cache), args.prefix)
        print(f"{component} {manifest[component].get('version', '?')} -> {args.prefix}")
    if (args.prefix / "lib").is_dir() and not (args.prefix / "lib64").exists():
        (args.prefix / "lib64").symlink_to("lib")
    if args.site_packages:
        link_wheel_headers(args.prefix, args.site_packages)
    if not (args.prefix / "bin" / "nvcc").is_file():
        fail(f"no bin/nvcc after unpacking {', '.join(args.component)}: list cuda_nvcc among the components")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the redist folder, e.g. https://.../compute/cuda/redist")
    parser.add_argument("--release", required=True, help="a CUDA release, e.g. 11.7.1")
    parser.add_argument("--component", action="append", required=True)
    parser.add_argument("--prefix", required=True, type=Path)
    parser.add_argument("--manifest-sha256", default="",
                        help="the sha256 redistrib_<release>.json must have (required unless --url is https)")
    parser.add_argument("--site-packages", type=Path, default=None)
    parser.add_argument("--cache", type=Path, default=Path("/root/.cache/torchdev-cuda"))
    args = parser.parse_args()
    try:
        install(args)
    except SystemExit:
        shutil.rmtree(args.prefix, ignore_errors=True)  # no half-made CUDA_HOME
        raise


if __name__ == "__main__":
    main()
