"""Size benchmark, per variant x flavour of the images already built: one table.

    .venv/bin/python benchmarks/sizes.py --variant cu117 --overlay overlays/local-debian.yaml [--no-zstd]

Per image: on-disk size (unpacked, the engine's) and the files `du` counts in it, the download size as the engine
stores it (gzip level 1, what `./dev push` sends by default) and re-compressed as `./dev push --compression zstd`
sends it (torchdev.oci's zstd level; benchmarks/push.py measures both pushes),
the payload (base + site-packages + what the flavour adds), bytes held twice by shared libraries
(docker/shared_libs.py), and the wall time of `docker run --rm IMAGE python -c "import torch"` (median of 3).
Targets (issue 11): a runtime GPU image at most 5.0 GB on disk, no duplicate libraries in runtime, devel at most
runtime + its toolchain. Build first: ./dev build --variant NAME --flavour runtime,devel.
"""
from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from torchdev.engine import Engine  # noqa: E402
from torchdev.matrix import load_matrix  # noqa: E402
from torchdev.oci import compressor, decompressed  # noqa: E402
from torchdev.checkout import read_plans  # noqa: E402
from torchdev.project import Paths, select_variants  # noqa: E402
from torchdev.table import human_size, render_table  # noqa: E402

GPU_RUNTIME_TARGET = 5.0e9


def files_bytes(engine: Engine, image: str, path: str = "/") -> int:
    return int(engine.output(image, "bash", "-c", f"du -sxbc {path} | tail -n 1", user="0").split()[0])


def duplicate_bytes(engine: Engine, image: str) -> int:
    """Bytes of the second and later copies of each soname, as the image's own check counts them."""
    script = ("import sys; sys.path.insert(0, '/usr/share/torchdev'); import shared_libs as s; "
              "print(sum(size for files in s.duplicates(['/']).values() for _, size in files[1:]))")
    return int(engine.output(image, "python", "-c", script, user="0").split()[-1])


class ByteCounter(io.RawIOBase):
    """A sink that only counts what is written to it."""

    def __init__(self) -> None:
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.count += len(data)
        return len(data)


def zstd_size(image: str) -> int:
    """The image's layers re-compressed with zstd as a push's copy is (torchdev.oci), summed: `docker save` gives an
    OCI layout whose blobs are the stored (gzip) layers, each decompressed and re-compressed here, streamed."""
    total = 0
    with tempfile.TemporaryDirectory(prefix="torchdev-sizes-") as scratch:
        path = Path(scratch) / "image.tar"
        with path.open("wb") as out:
            subprocess.run(["docker", "save", image], stdout=out, check=True)
        with tarfile.open(path) as archive:
            index = json.load(archive.extractfile("index.json"))
            manifest = json.load(archive.extractfile("blobs/sha256/" + index["manifests"][0]["digest"].split(":")[1]))
            for layer in manifest["layers"]:
                blob = archive.extractfile("blobs/sha256/" + layer["digest"].split(":")[1])
                counter = ByteCounter()
                with compressor(counter, "zstd") as packed:
                    shutil.copyfileobj(decompressed(blob, layer["mediaType"]), packed, 1 << 20)
                total += counter.count
    return total


def import_seconds(image: str) -> float:
    def once() -> float:
        started = time.monotonic()
        subprocess.run(["docker", "run", "--rm", image, "python", "-c", "import torch"], check=True,
                       capture_output=True)
        return time.monotonic() - started
    return statistics.median(once() for _ in range(3))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default=None, help="variant(s); default: every variant")
    parser.add_argument("--overlay", default=None)
    parser.add_argument("--no-zstd", action="store_true", help="skip the zstd re-compression (minutes per image)")
    args = parser.parse_args()
    engine = Engine.connect()
    matrix = load_matrix(ROOT / "images.yaml", overlay=args.overlay)
    plans = read_plans(Paths.at(ROOT), matrix, select_variants(matrix, variant=args.variant, every=not args.variant),
                       list(matrix.flavours))
    rows, runtime_disk, notes = [], {}, []
    for plan in plans:
        reference = plan.primary_reference
        if engine.image_id(reference) is None:
            notes.append(f"{plan.name}: not built ({reference}): ./dev build --variant {plan.variant.name} "
                         f"--flavour {plan.flavour.name}")
            continue
        sizes = engine.image_sizes(reference)
        base = files_bytes(engine, plan.build_args["BASE_IMAGE"])
        site = files_bytes(engine, reference, "/opt/venv/lib/python3*/site-packages")
        added = (sizes.on_disk or 0) - runtime_disk.get(plan.variant.name, sizes.on_disk or 0)
        runtime_disk.setdefault(plan.variant.name, sizes.on_disk or 0)
        duplicates = duplicate_bytes(engine, reference)
        target = target_for(plan, sizes.on_disk or 0, duplicates)
        rows.append((plan.name, human_size(sizes.on_disk), human_size(files_bytes(engine, reference)),
                     human_size(sizes.download), "-" if args.no_zstd else human_size(zstd_size(reference)),
                     f"{human_size(base)} + {human_size(site)}" + (f" + {human_size(added)}" if added else ""),
                     human_size(duplicates), f"{import_seconds(reference):.1f} s", target))
    print(render_table(["image", "on disk (unpacked)", "files (du)", "download (gzip, as stored)",
                        "download (zstd copy)", "payload: base + site-packages + toolchain", "held twice",
                        "docker run import torch", "target"], rows))
    for note in notes:
        print(f"note: {note}")
    return 0


def target_for(plan, on_disk: int, duplicates: int) -> str:
    """The issue's targets that apply to this image, each met or MISSED."""
    checks = []
    if plan.flavour.is_runtime:
        checks.append(("no duplicates", duplicates == 0))
        if plan.variant.cuda:
            checks.append((f"<= {GPU_RUNTIME_TARGET / 1e9:.1f} GB", on_disk <= GPU_RUNTIME_TARGET))
    return ", ".join(f"{name}: {'met' if ok else 'MISSED'}" for name, ok in checks) or "runtime + toolchain"


if __name__ == "__main__":
    sys.exit(main())
