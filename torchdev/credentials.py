"""Logins for private indexes and archives: read only from where the user's tools already keep them, handed to a
build only as BuildKit secrets, and never printed.

Three routes, and nothing else is read (docs/security.md, "Credentials"):
- pip's netrc: the file $NETRC names, else ~/.netrc. Only its `machine` entries for the hosts the build's pip talks
  to (images.yaml's pip_index and the variant's index; the CUDA toolchain's for devel) are passed on, as a netrc of
  their own; the rest of the file (other hosts, `default`) never leaves the host.
- TORCHDEV_PIP_INDEX_URL: an index URL with its login (USER:TOKEN@ before the host), as teams keep PIP_INDEX_URL.
  Only its login is used, for its host, which must be an index host of the matrix; images.yaml names the index
  itself, without the login.
- apt's: the file TORCHDEV_APT_AUTH_CONF names, in apt_auth.conf(5)'s format, mounted as
  /etc/apt/auth.conf.d/torchdev.conf in the apt steps only.

A URL with a login in images.yaml or an overlay is refused when the matrix is read (torchdev.matrix), since a URL
ends up in build args (kept in the image's history), lock headers and logs.
"""
from __future__ import annotations

import netrc
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping
from urllib.parse import unquote, urlsplit

from torchdev.errors import CONFIGURATION, ConfigError, Problem
from torchdev.files import input_file

NETRC_VARIABLE = "NETRC"
PIP_URL_VARIABLE = "TORCHDEV_PIP_INDEX_URL"
APT_AUTH_VARIABLE = "TORCHDEV_APT_AUTH_CONF"
NETRC_SECRET = "netrc"
"""The BuildKit secret the pip steps (and the CUDA toolchain's download) read through NETRC=/run/secrets/netrc."""
APT_AUTH_SECRET = "apt_auth"
"""The BuildKit secret the apt steps mount as /etc/apt/auth.conf.d/torchdev.conf."""
NETRC_ROUTE = ("~/.netrc or the file $NETRC names (`machine HOST login USER password TOKEN`; docs/security.md, "
               "Credentials)")
PIP_ROUTE = ("~/.netrc or the file $NETRC names (`machine HOST login USER password TOKEN`), or "
             f"{PIP_URL_VARIABLE} (the index URL with USER:TOKEN@ in it; docs/security.md, Credentials)")
APT_ROUTE = (f"an apt auth.conf file named by {APT_AUTH_VARIABLE} (`machine HOST login USER password TOKEN`, "
             "`machine http://HOST` for plain http; docs/security.md, Credentials)")
PLAIN_TOKEN = re.compile(r'^[^\s"\'\\#]+$')
"""What a netrc written here can carry so that every pip reads it back the same (Python 3.10's netrc reads quotes as
part of a word, 3.11's as quoting; '#' may start a comment)."""

BAD_NETRC = Problem("{path} ({source}) cannot be read as a netrc file ({reason})",
                    "fix that line, or point $NETRC at a file holding only the index logins", ConfigError,
                    CONFIGURATION)
NOT_PLAIN = Problem("the login for {host} from {source} holds white space, a quote, a backslash or '#', which a netrc "
                    "cannot carry the same way to every pip", "use a token without them", ConfigError, CONFIGURATION)
BAD_URL_VARIABLE = Problem("{variable} is not an index URL with a login ({reason})",
                           "set it to the index URL with USER:TOKEN@ before the host, or unset it", ConfigError, CONFIGURATION)
NO_APT_AUTH = Problem("{variable}={value} names no file", "name apt's auth.conf file, or unset {variable}",
                      ConfigError, CONFIGURATION)
URL_VARIABLE_HOST = Problem("{variable} names the host {host}, which no index of the matrix uses ({hosts})",
                            "write the index without its login as pip_index or a variant's index in an overlay "
                            "(https://{host}/...), or unset {variable}", ConfigError, CONFIGURATION)


@dataclass(frozen=True)
class Login:
    """A user and password for one host, and the route it came from; the password never shows in a repr."""

    host: str
    user: str
    password: str = field(repr=False)
    source: str = ""


def host_of(url: str) -> str:
    """The host name pip, uv and requests look a netrc entry up by: no port, no login, lower-case."""
    return (urlsplit(url).hostname or "").lower()


def netrc_path(environ: Mapping[str, str], home: Path) -> tuple[Path, str]:
    """pip's netrc, as requests finds it: $NETRC, else ~/.netrc; and how to name it in a line."""
    named = environ.get(NETRC_VARIABLE)
    if named:
        return Path(named), f"${NETRC_VARIABLE}"
    return home / ".netrc", "~/.netrc"


def netrc_logins(path: Path, *, source: str, hosts: Iterable[str]) -> tuple[Login, ...]:
    """The file's `machine` entries for `hosts` (its `default` entry is never passed on); () when there is no file."""
    if input_file(path, role=f"pip's netrc, {source}") is None:
        return ()
    try:
        parsed = netrc.netrc(str(path))
    except (netrc.NetrcParseError, OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "msg", None) or str(error)
        line = getattr(error, "lineno", None)
        raise BAD_NETRC(path=f"{path}:{line}" if line else path, source=source, reason=reason) from None
    found = []
    for host in dict.fromkeys(hosts):
        entry = parsed.hosts.get(host)
        if entry and entry[2] is not None:
            found.append(Login(host, entry[0] or "", entry[2], source))
    return tuple(found)


def url_login(environ: Mapping[str, str], *, hosts: Iterable[str], known: Iterable[str]) -> tuple[Login, ...]:
    """The login TORCHDEV_PIP_INDEX_URL carries, when its host is one of `hosts`; a value that is no URL with a login,
    or names a host no index of the matrix (`known`) uses, is refused."""
    value = environ.get(PIP_URL_VARIABLE)
    if not value:
        return ()
    try:
        parts = urlsplit(value)
        parts.port
    except ValueError as error:
        raise BAD_URL_VARIABLE(variable=PIP_URL_VARIABLE, reason=str(error)) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BAD_URL_VARIABLE(variable=PIP_URL_VARIABLE, reason="not an http:// or https:// URL with a host")
    if parts.password is None:
        raise BAD_URL_VARIABLE(variable=PIP_URL_VARIABLE, reason="it holds no USER:TOKEN@")
    host = parts.hostname.lower()
    known = sorted(set(known))
    if host not in known:
        raise URL_VARIABLE_HOST(variable=PIP_URL_VARIABLE, host=host, hosts=", ".join(known) or "only pip's default")
    if host not in set(hosts):
        return ()
    return (Login(host, unquote(parts.username or ""), unquote(parts.password), PIP_URL_VARIABLE),)


def pip_logins(environ: Mapping[str, str], *, hosts: Iterable[str], known: Iterable[str],
               home: Path | None) -> tuple[Login, ...]:
    """The logins the build's pip gets, one per host of `hosts` that has one: TORCHDEV_PIP_INDEX_URL's first (it is
    named for torchdev), then the netrc's ($NETRC, else `home`/.netrc; neither without a `home`). Nothing is read
    when no host needs a login."""
    hosts = tuple(dict.fromkeys(host for host in hosts if host))
    from_url = url_login(environ, hosts=hosts, known=known)
    rest = [host for host in hosts if host not in {login.host for login in from_url}]
    if not rest:
        return from_url
    logins = from_url
    if environ.get(NETRC_VARIABLE) or home is not None:
        path, source = netrc_path(environ, home or Path("~"))
        logins += netrc_logins(path, source=source, hosts=rest)
    for login in logins:
        if not all(PLAIN_TOKEN.match(text) for text in (login.user or "x", login.password or "x")):
            raise NOT_PLAIN(host=login.host, source=login.source)
    return logins


def netrc_text(logins: Iterable[Login]) -> str:
    """The logins as a netrc file, one `machine` line each."""
    return "".join(f"machine {login.host} login {login.user or 'anonymous'} password {login.password}\n"
                   for login in logins)


def write_netrc(folder: Path, logins: tuple[Login, ...]) -> Path | None:
    """The logins as a netrc file in `folder` (a private scratch folder the caller removes), readable by this user
    alone; None when there are none."""
    if not logins:
        return None
    path = folder / "netrc"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(netrc_text(logins))
    return path


def apt_auth_file(environ: Mapping[str, str]) -> Path | None:
    """The apt auth.conf file TORCHDEV_APT_AUTH_CONF names, None when unset; a name that is no readable file is
    refused."""
    value = environ.get(APT_AUTH_VARIABLE)
    if not value:
        return None
    path = input_file(Path(value), role=f"apt's logins, from {APT_AUTH_VARIABLE}")
    if path is None:
        raise NO_APT_AUTH(variable=APT_AUTH_VARIABLE, value=value)
    return path
