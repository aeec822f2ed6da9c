"""`./dev capture`: the packages people installed in a dev container or a compose container, beyond its image, read
back and declared in the matrix, so the next build has them.

A container's user installs with pip into their own site-packages (~/.local), behind the image's packages
(docker/user-layer.sh says why there): /home/torchdev in a dev container, whose home is a named volume, and
/home/owners/UID in a compose service, whose homes are one too. What is there is read from the container, running or
stopped, through a short-lived container of the same image that mounts its volumes read-only, without network or
privileges: never a shell in the user's own container, and never the container's writable layer, which a rebuild
throws away (what lasts is what the volumes hold).

Declared, they are the variant's `added_packages`, name==version, written into the overlay (or images.yaml) as the
one block of that key, in place: the rest of the file, its comments included, stays as it was. The command then locks
them apart from the variant's lock (torchdev.lock: the added lock) and builds, which reruns only the images' last step.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from torchdev.engine import ContainerEngine, ContainerInfo, ContainerSpec, RunStatus
from torchdev.errors import RUNTIME, USAGE, Problem, TorchdevError, UsageError
from torchdev.plan import LABEL_PREFIX
from torchdev.profile import DEV_CONTAINER, sdk_security
from torchdev.yamlsource import SourcedDict, parse_yaml

DEV_CONTAINER_LABEL = "devcontainer.local_folder"
"""The label the Dev Containers CLI puts on a folder's containers: the folder."""
COMPOSE_LABEL = "com.docker.compose.project.working_dir"
"""The label Compose puts on a project's containers: the folder of its compose file."""
LIST_TIMEOUT = 120

NO_SUCH_CONTAINER = Problem("no container named {reference}", "name one `docker ps -a` lists, or leave --container "
                            "out for this checkout's dev or compose container", UsageError, USAGE)
NO_CONTAINER = Problem("no dev container or compose container of {root}",
                       "open the dev container (`devcontainer up --workspace-folder .`), or keep a compose container "
                       "(`docker compose run --name NAME dev`), then name it with --container NAME", UsageError, USAGE)
SEVERAL_CONTAINERS = Problem("{count} containers of {root}: {names}", "name one with --container NAME", UsageError,
                             USAGE)
NOT_TORCHDEV = Problem("container {name} runs {image}, which is not a torchdev image (no {label} label)",
                       "name a container of a torchdev image", UsageError, USAGE)
UNREADABLE = Problem("cannot read what container {name} added: {cause}",
                     "check that its image still runs (`docker run --rm {image} python -V`)", TorchdevError, RUNTIME)
FLOW_STYLE = Problem("{file}:{line}: {key} is written on one line ({{...}}), where added_packages cannot be added",
                     "write it as a block, one key per line, then capture again", UsageError, USAGE)

LIST_SCRIPT = r"""
import glob, json, sys
from importlib import metadata
version = "%d.%d" % sys.version_info[:2]
found = []
for pattern in ("/home/*/.local/lib/python%s/site-packages", "/home/owners/*/.local/lib/python%s/site-packages"):
    for site in sorted(glob.glob(pattern % version)):
        for dist in metadata.distributions(path=[site]):
            origin = json.loads(dist.read_text("direct_url.json") or "{}")
            found.append({"name": dist.metadata["Name"], "version": dist.version, "site": site,
                          "url": origin.get("url", "")})
print(json.dumps(found))
"""
"""Run by the image's own Python (standard library only): every distribution in a user's site-packages under /home,
for this Python's version, and where pip took it from when not from an index (direct_url.json: a folder, an
editable checkout, a URL)."""


@dataclass(frozen=True)
class Addition:
    """A package a container's user installed: its name and version, the site-packages it is in, and the URL pip
    installed it from when that was no index (a folder, an editable checkout): such a one cannot be locked."""

    name: str
    version: str
    site: str
    url: str = ""

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class Target:
    """The container read: its name, its image's variant and flavour (the image's labels), and the image."""

    name: str
    variant: str
    flavour: str
    image_id: str
    running: bool


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def find_container(engine: ContainerEngine, reference: str | None, *, root: Path) -> ContainerInfo:
    """The container `reference` names, or without one the only dev or compose container of the checkout at `root`;
    one usage line when there is none, or several, or it runs no torchdev image."""
    if reference:
        found = engine.container(reference)
        if found is None:
            raise NO_SUCH_CONTAINER(reference=reference)
    else:
        candidates = {c.id: c for label in (DEV_CONTAINER_LABEL, COMPOSE_LABEL)
                      for c in engine.containers(label=f"{label}={root}")}
        if not candidates:
            raise NO_CONTAINER(root=root)
        if len(candidates) > 1:
            raise SEVERAL_CONTAINERS(count=len(candidates), root=root,
                                     names=", ".join(sorted(c.name for c in candidates.values())))
        found = next(iter(candidates.values()))
    if f"{LABEL_PREFIX}.variant" not in found.labels:
        raise NOT_TORCHDEV(name=found.name, image=found.image_id[:19], label=f"{LABEL_PREFIX}.variant")
    return found


def target_of(container: ContainerInfo) -> Target:
    labels = container.labels
    return Target(container.name, labels[f"{LABEL_PREFIX}.variant"], labels.get(f"{LABEL_PREFIX}.flavour", "runtime"),
                  container.image_id, container.running)


def read_additions(engine: ContainerEngine, container: ContainerInfo) -> list[Addition]:
    """What the container's users installed into their site-packages, read through a container of the same image
    that mounts its volumes read-only (no network, no capability)."""
    spec = ContainerSpec(container.image_id, ("python", "-I", "-c", LIST_SCRIPT), entrypoint=(),
                         volumes_from=(f"{container.id}:ro",), network_disabled=True, **sdk_security(DEV_CONTAINER))
    result = engine.run(spec, timeout=LIST_TIMEOUT)
    lines = result.output.strip().splitlines()
    if result.status is not RunStatus.EXITED or result.exit_code != 0 or not lines:
        raise UNREADABLE(name=container.name, cause=(lines or [result.status.value])[-1][:300],
                         image=container.image_id[:19])
    try:
        found = json.loads(lines[-1])
        return sorted((Addition(str(item["name"]), str(item["version"]), str(item["site"]), str(item.get("url") or ""))
                       for item in found), key=lambda addition: (normalized(addition.name), addition.site))
    except (ValueError, KeyError, TypeError) as error:
        raise UNREADABLE(name=container.name, cause=f"its listing is not what torchdev wrote ({error})",
                         image=container.image_id[:19]) from None


def lockable(additions: list[Addition]) -> tuple[list[Addition], list[Addition]]:
    """(the additions an index serves, those pip took from a folder or URL, which no lock can name)."""
    return [a for a in additions if not a.url], [a for a in additions if a.url]


def merged(declared: tuple[str, ...], additions: list[Addition]) -> tuple[str, ...]:
    """The variant's added packages with the additions: one entry per name (an addition's version over a declared
    one), sorted by name."""
    by_name = {normalized(re.split(r"[=<>!~;\[ ]", requirement, maxsplit=1)[0]): requirement
               for requirement in declared}
    by_name.update({normalized(addition.name): addition.requirement for addition in additions})
    return tuple(by_name[name] for name in sorted(by_name))


# --- the YAML, edited in place -------------------------------------------------------------------------------------

KEY = "added_packages"
COMMENT = "# ./dev capture: installed in a container, locked apart"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _content(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _child_indent(lines: list[str], index: int) -> int:
    """The indentation of the block under the key on line `index`: its first content line's, else two deeper."""
    parent = _indent(lines[index])
    following = next((line for line in lines[index + 1:] if _content(line)), None)
    return _indent(following) if following is not None and _indent(following) > parent else parent + 2


def _block_style(lines: list[str], index: int, *, file: Path, key: str) -> None:
    value = lines[index].split(":", 1)[1].strip() if ":" in lines[index] else ""
    if value and not value.startswith("#"):
        raise FLOW_STYLE(file=file, line=index + 1, key=key)


def _block(indent: int, packages: tuple[str, ...]) -> list[str]:
    pad = " " * indent
    return [f"{pad}{KEY}:  {COMMENT}\n", *(f"{pad}  - {package}\n" for package in packages)]


def _end_of_value(lines: list[str], index: int) -> int:
    """The index after the last line of the value of the key on line `index` (its deeper lines, and `- ` items at
    its own indentation)."""
    key_indent, end = _indent(lines[index]), index + 1
    for number in range(index + 1, len(lines)):
        line = lines[number]
        if not _content(line):
            continue
        if _indent(line) > key_indent or (_indent(line) == key_indent and line.strip().startswith("- ")):
            end = number + 1
        else:
            break
    return end


def declared_text(text: str, path: Path, *, variant: str, packages: tuple[str, ...]) -> str:
    """`text` (the content of `path`) with variants.<variant>.added_packages set to `packages`: its block replaced
    where the file has one, else added under the variant (under `variants:`, or at the end, where the file names
    neither). Everything else stays as written."""
    data = parse_yaml(path, text)
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    variants = data.get("variants")
    fields = variants.get(variant) if isinstance(variants, SourcedDict) else None
    if isinstance(fields, SourcedDict) and KEY in fields:
        index = fields.origin(KEY).line - 1
        lines[index:_end_of_value(lines, index)] = _block(_indent(lines[index]), packages)
    elif isinstance(variants, SourcedDict) and variant in variants:
        index = variants.origin(variant).line - 1
        _block_style(lines, index, file=path, key=f"variants.{variant}")
        lines[index + 1:index + 1] = _block(_child_indent(lines, index), packages)
    elif isinstance(variants, SourcedDict):
        index = data.origin("variants").line - 1
        _block_style(lines, index, file=path, key="variants")
        indent = _child_indent(lines, index)
        lines[index + 1:index + 1] = [f"{' ' * indent}{variant}:\n", *_block(indent + 2, packages)]
    else:
        lines += ["variants:\n", f"  {variant}:\n", *_block(4, packages)]
    return "".join(lines)
