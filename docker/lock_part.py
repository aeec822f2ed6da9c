"""Part of a hash-pinned lock (`./dev lock`'s format), printed for `pip install --require-hashes --no-deps -r`:
    lock_part.py LOCK --without triton cmake lit     # what runtime installs
    lock_part.py LOCK --only triton cmake lit        # what devel adds, from the same lock, the same hashes
One lock per variant and platform stays the single record of every file; a flavour installs its share of it
(images.yaml: flavours.<name>.lock_packages). Names compare as pip compares them (case, `-`, `_` and `.` alike).
"""
import argparse
import re
import sys


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def entries(text: str) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """(the header lines, [(package name, its lines)]): an entry is a `name==version \\` line and the indented
    `--hash` and `# file` lines under it."""
    header: list[str] = []
    found: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            found.append((normalized(re.split(r"[=<>!~;\[ ]", line, maxsplit=1)[0]), [line]))
        elif found:
            found[-1][1].append(line)
        else:
            header.append(line)
    return header, found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("lock")
    chosen = parser.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--only", nargs="*", metavar="NAME", help="these packages (those the lock has)")
    chosen.add_argument("--without", nargs="*", metavar="NAME", help="every package but these")
    args = parser.parse_args()
    with open(args.lock, encoding="utf-8") as file:
        header, found = entries(file.read())
    names = {normalized(name) for name in (args.only if args.only is not None else args.without)}
    keep = [lines for name, lines in found if (name in names) == (args.only is not None)]
    print("\n".join(header + [line for lines in keep for line in lines]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
