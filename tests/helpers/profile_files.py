"""The committed files that cannot import torchdev.profile, read back: what each says about how a torch container
starts, set against the profile's rendering for it. Each `*_drift` returns "" when the file carries exactly the
rendering, else one message naming the file, what differs, and what to write instead."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import yaml

from torchdev.profile import (COMPOSE_KEYS, DEVCONTAINER_KEYS, ContainerProfile, compose_environment,
                              compose_service, devcontainer_fields)

PROFILE = "torchdev/profile.py"


def differences(expected: dict, found: dict) -> list[str]:
    """One line per field the file has otherwise than the rendering, or has and the rendering has not."""
    lines = []
    for key in dict.fromkeys([*expected, *found]):
        if key not in found:
            lines.append(f"{key}: missing; the profile renders {expected[key]!r}")
        elif key not in expected:
            lines.append(f"{key}: the file has {found[key]!r}, the profile renders none: remove it")
        elif found[key] != expected[key]:
            lines.append(f"{key}: the file has {found[key]!r}, the profile renders {expected[key]!r}")
    return lines


def report(where: str, profile_name: str, lines: list[str], fix: str, rendering: str) -> str:
    if not lines:
        return ""
    listed = "".join(f"\n  - {line}" for line in lines)
    return (f"{where} differs from the container profile ({PROFILE}, {profile_name}):{listed}\n"
            f"fix: {fix} (or, if the file is right, change the profile, then every file it renders into):\n"
            f"{rendering}")


# --- compose -----------------------------------------------------------------------------------------------------

def merged(base: dict, override: dict) -> dict:
    """A service with `override` applied as compose applies an override file or `extends`: mappings (environment,
    ulimits) merge key by key, anything else is replaced."""
    result = dict(base)
    for key, value in override.items():
        both_maps = isinstance(value, dict) and isinstance(base.get(key), dict)
        result[key] = {**base[key], **value} if both_maps else value
    return result


def compose_services(path: Path) -> dict[str, dict]:
    """The file's services with YAML merge keys applied (PyYAML does) and `extends` resolved."""
    services = yaml.safe_load(path.read_text())["services"]
    resolved = {}
    for name, service in services.items():
        extends = service.get("extends")
        if extends:
            origin = compose_services(path.parent / extends["file"]) if "file" in extends else resolved
            service = merged(origin[extends["service"]], {k: v for k, v in service.items() if k != "extends"})
        resolved[name] = service
    return resolved


def compose_part(service: dict, profile: ContainerProfile) -> dict:
    """The fields of a service the profile owns, and the profile's variables of its environment."""
    part = {key: service[key] for key in COMPOSE_KEYS if key in service}
    names = compose_environment(profile)
    environment = {k: v for k, v in (service.get("environment") or {}).items() if k in names}
    return {**part, **({"environment": environment} if environment else {})}


def compose_drift(path: Path, profile: ContainerProfile, profile_name: str, *, over: Path | None = None,
                  gpus: bool = False) -> str:
    """Each service of `path` (merged over the same service of `over`, for an override file) against
    compose_service(profile): the fields, and an entrypoint that starts with the profile's."""
    base = compose_services(over) if over else {}
    expected = compose_service(profile, gpus=gpus)
    problems = []
    for name, service in compose_services(path).items():
        effective = merged(base.get(name, {}), service)
        lines = differences(expected, compose_part(effective, profile))
        entry = list(profile.user.entrypoint)
        if entry and effective.get("entrypoint", [])[:len(entry)] != entry:
            lines.append(f"entrypoint: {effective.get('entrypoint')!r} does not start with {entry!r}")
        problems += [f"service {name}: {line}" for line in lines]
    fragment = yaml.safe_dump(expected, sort_keys=False, default_flow_style=False).strip()
    where = f"{path.name}" + (f" over {over.name}" if over else "")
    return report(where, profile_name, problems, "give every service these fields, through its anchor or extends, "
                  "keeping their comments", fragment)


# --- devcontainer.json -------------------------------------------------------------------------------------------

def without_comments(text: str) -> str:
    """JSON with comments (// and /* */ outside strings), as devcontainer.json is written, made plain JSON."""
    out, i, in_string = [], 0, False
    while i < len(text):
        char = text[i]
        if in_string:
            out.append(char)
            if char == "\\":
                out.append(text[i + 1])
                i += 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
            out.append(char)
        elif text.startswith("//", i):
            i = text.find("\n", i) - 1 if "\n" in text[i:] else len(text)
        elif text.startswith("/*", i):
            i = text.index("*/", i) + 1
        else:
            out.append(char)
        i += 1
    return "".join(out)


def read_jsonc(path: Path) -> dict:
    return json.loads(without_comments(path.read_text()))


def devcontainer_drift(path: Path, profile: ContainerProfile, profile_name: str, *, gpus: bool) -> str:
    config = read_jsonc(path)
    expected = devcontainer_fields(profile, gpus=gpus)
    found = {key: config[key] for key in DEVCONTAINER_KEYS if key in config}
    lines = "\n".join(f"  {json.dumps(key)}: {json.dumps(value)}," for key, value in expected.items())
    return report(str(path.relative_to(path.parents[2])), profile_name, differences(expected, found),
                  "set these fields, keeping the comments above them", lines)


# --- deploy/slurm/train.sbatch -----------------------------------------------------------------------------------

def bash_array(text: str, name: str) -> list[str] | None:
    """The words of `[local] NAME=(...)` in a bash script, as bash splits them; None when there is no such line."""
    found = re.search(rf"^\s*(?:local\s+)?{name}=\(([^)]*)\)", text, re.MULTILINE)
    return shlex.split(found.group(1), comments=True) if found else None


def bash_words(words: list[str]) -> str:
    """Words as bash reads them back: a word with a ${VARIABLE} in double quotes, so bash still expands it."""
    return " ".join(f'"{word}"' if "${" in word else shlex.quote(word) for word in words)


def sbatch_drift(path: Path, arrays: dict[str, list[str]], profile_name: str) -> str:
    """Each bash array of `arrays` (its name -> the docker run arguments the profile renders) as the script has it."""
    text = path.read_text()
    lines = [f"{name}=({bash_words(bash_array(text, name) or [])}): the profile renders ({bash_words(words)})"
             for name, words in arrays.items() if bash_array(text, name) != words]
    rendering = "\n".join(f"local {name}=({bash_words(words)})" for name, words in arrays.items())
    return report(str(path.relative_to(path.parents[2])), profile_name, lines, "write the arrays so", rendering)
