"""The grammars and limits of what torchdev's values end up in, each written once, from its owner's specification:
Docker image references and tags (the distribution project's reference grammar, reference/regexp.go, with its
255-character name limit and 128-character tags), Kubernetes object names (DNS-1123 labels, 63 characters, and
DNS-1035 where a name must start with a letter), Python requirements and versions (PEP 508 and PEP 440, through
`packaging`, the library pip itself vendors) and the URLs pip and apt are given.

Each check returns '' for a good value, else why it is not one, in words that fit after "'<value>' is not ...",
"... because": the callers (images.yaml's validation, the options of a task) add where the value came from and the
fix. Pure: no check reads or runs anything.
"""
from __future__ import annotations

import re
from urllib.parse import urlsplit

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

# reference/regexp.go of github.com/distribution/reference (the grammar Docker's own parser implements)
_ALPHANUMERIC = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
PATH_COMPONENT = rf"{_ALPHANUMERIC}(?:{_SEPARATOR}{_ALPHANUMERIC})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
DOMAIN = rf"{_HOST}(?::[0-9]+)?"
TAG = r"[\w][\w.-]{0,127}"
DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
NAME_RE = re.compile(rf"^(?:(?P<domain>{DOMAIN})/)?(?P<path>{PATH_COMPONENT}(?:/{PATH_COMPONENT})*)$")
TAG_RE = re.compile(rf"^{TAG}$")
SHA256_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
NAME_MAX = 255
"""The longest repository name (registry host and path) the distribution spec lets clients accept."""
TAG_MAX = 128

DNS_1123_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_1035_LABEL_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS_LABEL_MAX = 63

SHELL_UNSAFE = re.compile(r"[\s\"'`\\*?]")
"""What a Dockerfile's unquoted ${VAR} (pip install ${EXTRA_PACKAGES}) would split or glob on, or hand pip as a
literal quote; brackets pass only as a requirement's [extras]."""


def repository_problem(text: str) -> str:
    """Why `text` is no repository name (`torchdev`, `registry:5000/team/torchdev`): '' when it is one."""
    if not text:
        return "an image repository name: it is empty"
    found = NAME_RE.match(text)
    if found is None:
        return ("an image repository name: lower-case letters, digits and separators (. _ __ -) in each "
                "/-separated part, after an optional registry host[:port]/")
    if len(text) > NAME_MAX:
        return f"an image repository name: {len(text)} characters, where at most {NAME_MAX} are allowed"
    port = found["domain"].rpartition(":")[2] if found["domain"] and ":" in found["domain"].strip("[]") else ""
    if port and not 0 < int(port) < 65536:
        return f"an image repository name: port {port} is not between 1 and 65535"
    return ""


def tag_problem(text: str) -> str:
    """Why `text` is no Docker tag: '' when it is one (letters, digits, _ . -, not first . or -, 128 at most)."""
    if TAG_RE.match(text):
        return ""
    if len(text) > TAG_MAX:
        return f"a Docker tag: {len(text)} characters, where at most {TAG_MAX} are allowed"
    return "a Docker tag: letters, digits, '_', '.' and '-', not starting with '.' or '-'"


def split_reference(text: str) -> tuple[str, str | None, str | None]:
    """(name, tag, digest) of `name[:tag][@digest]`; a registry's port is no tag."""
    name, at, digest = text.partition("@")
    tag = None
    if ":" in name.rpartition("/")[2]:
        name, tag = name.rsplit(":", 1)
    return name, tag, digest if at else None


def reference_problem(text: str, *, digest_required: bool = False) -> str:
    """Why `text` is no image reference `name[:tag][@sha256:digest]`: '' when it is one."""
    if not text or re.search(r"\s", text):
        return "an image reference (name[:tag][@sha256:<64 hex digits>]): " + (
            "it is empty" if not text else "it holds white space")
    name, tag, digest = split_reference(text)
    problem = repository_problem(name) or (tag_problem(tag) if tag is not None else "")
    if problem:
        return problem
    if digest is not None and not SHA256_DIGEST_RE.match(digest):
        return "an image reference: its digest is not sha256:<64 lower-case hex digits>"
    if digest_required and digest is None:
        return "an image reference by digest (NAME@sha256:<64 hex digits>)"
    return ""


def dns_label_problem(text: str, *, letter_first: bool = False, max_length: int = DNS_LABEL_MAX) -> str:
    """Why `text` cannot name a Kubernetes object (a DNS-1123 label; with letter_first a DNS-1035 one, as Services
    need): '' when it can."""
    pattern = DNS_1035_LABEL_RE if letter_first else DNS_1123_LABEL_RE
    if not pattern.match(text):
        start = "a letter" if letter_first else "a letter or digit"
        return f"a Kubernetes name: lower-case letters, digits and '-', starting with {start} and ending with a " \
               "letter or digit"
    if len(text) > max_length:
        return f"a Kubernetes name: {len(text)} characters, where at most {max_length} fit"
    return ""


def version_problem(text: str) -> str:
    """Why `text` is no PEP 440 version: '' when it is one."""
    try:
        Version(text)
    except InvalidVersion:
        return "a version (PEP 440, e.g. 0.15.2)"
    return ""


def requirement_problem(text: str, *, pinned: bool = False) -> str:
    """Why `text` cannot be handed to pip as one requirement word (PEP 508, name[extras] and versions, no spaces,
    markers or URLs, as a Dockerfile's word splitting needs): '' when it can. `pinned`: exactly name==version."""
    if not text or SHELL_UNSAFE.search(text):
        return ("a requirement pip can take as one word (name[extras] with versions, e.g. numpy==1.26.4; no spaces, "
                "quotes, markers or URLs)")
    try:
        requirement = Requirement(text)
    except InvalidRequirement as error:
        return f"a requirement (PEP 508: {str(error).splitlines()[0]})"
    if requirement.url or requirement.marker:
        return "a requirement pip can take as one word (no URLs or markers)"
    specifiers = list(requirement.specifier)
    if pinned and not (len(specifiers) == 1 and specifiers[0].operator == "=="
                       and "*" not in specifiers[0].version):
        return "pinned as name==version"
    return ""


USERINFO_RE = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s?#]*@")
"""The login part of a URL (`user:password@`, up to the authority's last @), after its scheme."""


def without_userinfo(text: str) -> str:
    """`text` with the user and password taken out of every URL in it: the one way torchdev shows a URL it did not
    write itself (an error line, a build log, a git remote), since a login must never be printed or kept."""
    return USERINFO_RE.sub(r"\g<scheme>", text)


def has_userinfo(url: str) -> bool:
    """Whether `url` carries a user or a password."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return bool(USERINFO_RE.search(url))
    return parts.username is not None or parts.password is not None or bool(USERINFO_RE.search(url))


def url_problem(text: str, *, schemes: tuple[str, ...] = ("http", "https")) -> str:
    """Why `text` is no URL torchdev hands on (to pip, apt or curl inside a build): '' when it is one. A URL with a
    user or password is refused: a build argument is kept in the image's history for anyone who pulls it (the
    configuration's own check says which route takes the login instead, torchdev.credentials)."""
    if not text or re.search(r"[\s\"'`\\<>{}|^]", text) or any(ord(c) < 32 or ord(c) == 127 for c in text):
        return f"a URL ({', '.join(f'{scheme}://' for scheme in schemes)}) without spaces or quotes"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as error:
        return f"a URL ({error})"
    if parts.scheme not in schemes:
        return f"a URL ({', '.join(f'{scheme}://' for scheme in schemes)})"
    if parts.scheme != "file" and not parts.hostname:
        return "a URL with a host"
    if has_userinfo(text):
        return "a URL without a login (a build argument is kept in the image's history for anyone who pulls it)"
    if port == 0:
        return "a URL with a port between 1 and 65535"
    return ""
