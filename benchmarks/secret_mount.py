"""What a RUN step's mount kind costs before the step starts, on top of a given image; one table.

    .venv/bin/python benchmarks/secret_mount.py --image torchdev:cu117 --image torchdev-base:bookworm

For each image and each mount kind, builds a throwaway two-step Dockerfile with no cache and no output kept
(`--output=type=cacheonly`):

    FROM <image>
    USER root
    RUN echo one > /one
    RUN <mount> true

and reads from BuildKit's raw progress (`--progress=rawjson`) the gap between the first step's end and the second
step's start: what BuildKit does before it runs a step with that mount. It also reads how many bytes dockerd read
meanwhile (/proc/<dockerd>/io, so run it on an otherwise idle engine, as root). Why: the image's last step (the user
layer) mounts the build's secrets, and a one-line rebuild showed 6 s that no step's own time accounts for.
Nothing is tagged or kept; the build context is a temporary folder.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from torchdev.table import human_size, render_table  # noqa: E402

MOUNTS = {
    "none": "",
    "cache": "--mount=type=cache,target=/tmp/bench-cache",
    "bind (context)": "--mount=type=bind,source=secret.txt,target=/tmp/bench-bind",
    "tmpfs": "--mount=type=tmpfs,target=/tmp/bench-tmpfs",
    "secret": "--mount=type=secret,id=bench",
    "ssh": "--mount=type=ssh",
}


def vertices(raw: str) -> dict[str, dict]:
    """name -> the vertex's started/completed times, from buildx's --progress=rawjson stream."""
    decoder, found, index = json.JSONDecoder(), {}, 0
    while index < len(raw):
        start = raw.find("{", index)
        if start < 0:
            break
        try:
            record, index = decoder.raw_decode(raw, start)
        except json.JSONDecodeError:
            index = start + 1
            continue
        for vertex in record.get("vertexes") or []:
            found.setdefault(vertex.get("name", ""), {}).update(
                {key: vertex[key] for key in ("started", "completed") if key in vertex})
    return found


def moment(stamp: str) -> datetime:
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{whole}.{(fraction + '000000')[:6]}")


def dockerd_read() -> int:
    pid = subprocess.run(["pidof", "dockerd"], capture_output=True, text=True, check=True).stdout.split()[0]
    fields = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return int(fields["rchar"])


def measure(image: str, mount: str, folder: Path) -> tuple[float, int]:
    (folder / "Dockerfile").write_text(f"FROM {image}\nUSER root\nRUN echo one > /one\nRUN {mount} true\n")
    before = dockerd_read()
    done = subprocess.run(["docker", "buildx", "build", "--no-cache", "--progress=rawjson", "--provenance=false",
                           "--secret", f"id=bench,src={folder / 'secret.txt'}", "--output=type=cacheonly",
                           str(folder)], capture_output=True, text=True, check=False)
    read = dockerd_read() - before
    if done.returncode != 0:
        raise SystemExit(f"the build on {image} with '{mount}' failed:\n{done.stderr[-2000:]}")
    steps = vertices(done.stderr)
    first = next(v for name, v in steps.items() if name.endswith("RUN echo one > /one"))
    second = next(v for name, v in steps.items() if name.endswith(" true"))
    return (moment(second["started"]) - moment(first["completed"])).total_seconds(), read


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", action="append", required=True, help="an image on the engine (repeatable)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="torchdev-bench-mount-") as scratch:
        folder = Path(scratch)
        (folder / "secret.txt").write_text("not a real secret\n")
        for image in args.image:
            for kind, mount in MOUNTS.items():
                results = [measure(image, mount, folder) for _ in range(args.rounds)]
                gaps = sorted(gap for gap, _ in results)
                rows.append((image, kind, " ".join(f"{gap:.2f} s" for gap in gaps),
                             human_size(max(read for _, read in results))))
                print(f"{image} {kind}: {rows[-1][2]}", file=sys.stderr, flush=True)
    print(render_table(["image", "mount on the second RUN", "gap before it starts (each round)",
                        "dockerd read (most)"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
