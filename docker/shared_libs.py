"""Shared libraries an image holds twice: the same soname in two different files.

    python shared_libs.py [ROOT ...]      # default: / ; exit 1 listing each duplicate with its size

torch loads its CUDA libraries (cuDNN, cuBLAS, NCCL, ...) from its own wheels; a second copy of one under /usr
(from a CUDA base image) is never loaded and only makes the image bigger. The soname is read from each ELF file's
dynamic section (DT_SONAME), so renamed copies count and links to one file do not. Pure Python: the runtime image
has no binutils.

Wheel-private copies are left out: auditwheel and the PyTorch wheels rename the libraries they vendor with a hash
(torchvision.libs/libz.e3d3156c.so.1, torch/lib/libcudart-d0da41ae.so.11.0) and load them by that name, so they
are loaded beside the system's copy and cannot be removed.
"""
import os
import re
import struct
import sys
from collections import defaultdict

SKIP = ("/proc", "/sys", "/dev", "/run", "/tmp")
DT_SONAME = 14
PT_DYNAMIC = 2
PRIVATE_COPY_RE = re.compile(r"[.-][0-9a-f]{8}\.so")


def soname(path):
    """The DT_SONAME of a 64-bit little-endian ELF shared object, or None for anything else."""
    try:
        with open(path, "rb") as file:
            header = file.read(64)
            if len(header) < 64 or header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
                return None
            phoff, = struct.unpack_from("<Q", header, 32)
            phentsize, phnum = struct.unpack_from("<HH", header, 54)
            segments = []
            for number in range(phnum):
                file.seek(phoff + number * phentsize)
                kind, _, offset, vaddr, _, filesz = struct.unpack("<IIQQQQ", file.read(40))
                segments.append((kind, offset, vaddr, filesz))
            return _soname_from(file, segments)
    except (OSError, struct.error):
        return None


def _soname_from(file, segments):
    dynamic = [s for s in segments if s[0] == PT_DYNAMIC]
    if not dynamic:
        return None
    _, offset, _, size = dynamic[0]
    file.seek(offset)
    entries = file.read(size)
    tags = [struct.unpack_from("<qQ", entries, at) for at in range(0, len(entries) - 15, 16)]
    values = dict(tags)
    if DT_SONAME not in values or 5 not in values:  # 5: DT_STRTAB, a virtual address
        return None
    strtab = _file_offset(values[5], segments)
    if strtab is None:
        return None
    file.seek(strtab + values[DT_SONAME])
    return file.read(256).split(b"\0", 1)[0].decode(errors="replace") or None


def _file_offset(address, segments):
    """Where a virtual address lies in the file, through the PT_LOAD segment that maps it."""
    for kind, offset, vaddr, filesz in segments:
        if kind == 1 and vaddr <= address < vaddr + filesz:
            return offset + address - vaddr
    return None


def shared_objects(roots):
    """(soname, path, size) of every ELF shared object under `roots`, each file once (links and hard links to
    one file are one file)."""
    seen = set()
    for root in roots:
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if os.path.join(folder, d) not in SKIP]
            for name in files:
                if ".so" not in name or PRIVATE_COPY_RE.search(name):
                    continue
                path = os.path.join(folder, name)
                try:
                    status = os.stat(path)
                except OSError:
                    continue
                if (status.st_dev, status.st_ino) in seen or not os.path.isfile(path):
                    continue
                seen.add((status.st_dev, status.st_ino))
                found = soname(path)
                if found:
                    yield found, os.path.realpath(path), status.st_size


def duplicates(roots):
    """soname -> [(path, size), ...] for every soname held by more than one file."""
    by_soname = defaultdict(list)
    for name, path, size in shared_objects(roots):
        by_soname[name].append((path, size))
    return {name: sorted(files) for name, files in sorted(by_soname.items()) if len(files) > 1}


def main(argv):
    found = duplicates(argv or ["/"])
    if not found:
        print("shared libraries: no soname is held twice")
        return 0
    wasted = sum(size for files in found.values() for _, size in files[1:])
    print(f"torchdev: {len(found)} shared librar{'y is' if len(found) == 1 else 'ies are'} held twice "
          f"({wasted / 2**20:.0f} MiB that is never loaded): remove the copy torch does not load, e.g. use a base "
          "without CUDA libraries (images.yaml, flavours)", file=sys.stderr)
    for name, files in found.items():
        print(f"  {name}: " + ", ".join(f"{path} ({size / 2**20:.1f} MiB)" for path, size in files), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
