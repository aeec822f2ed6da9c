"""Why pip could not read an index, when the reason is a login. Run by a build step after pip failed:

    python index_login.py INDEX_URL...

pip skips an index page that answers 401 without a word (it logs it at debug level) and then says only "No matching
distribution found", which sends users looking for a missing package. This asks each index (empty arguments are
skipped) once, with the login the build was given for its host (the netrc secret, through NETRC), and prints
torchdev's line when the answer is 401 or 403: no login given, or the one given refused. It never prints a login,
and exits 0 either way: the step fails on pip's status.

cuda_toolchain.py imports login_for and open_with_login from here (the steps mount both side by side), so a mirror's
login is read and sent the one same way wherever a build step fetches.
"""
import base64
import netrc
import os
import ssl
import sys
import urllib.error
import urllib.request
from urllib.parse import urlsplit, urlunsplit

CA_BUNDLE = "/run/secrets/ca_bundle"
ROUTE = ("~/.netrc or the file $NETRC names (machine HOST login USER password TOKEN), or TORCHDEV_PIP_INDEX_URL (the "
         "index URL with USER:TOKEN@ in it); docs/security.md, Credentials")


def shown(url):
    """The URL without any login, as torchdev shows every URL."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def login_for(host):
    """(user, password) for `host` from the netrc secret, or None."""
    path = os.environ.get("NETRC")
    if not path or not os.path.isfile(path):
        return None
    entry = netrc.netrc(path).hosts.get(host)
    return (entry[0] or "", entry[2]) if entry and entry[2] is not None else None


def open_with_login(url, login, timeout):
    """urlopen(url) with `login` as basic auth (never sent on when the server redirects to another host), trusting the
    build's CA bundle secret when there is one."""
    request = urllib.request.Request(url)
    if login:
        token = base64.b64encode(f"{login[0]}:{login[1]}".encode()).decode()
        request.add_unredirected_header("Authorization", f"Basic {token}")
    context = ssl.create_default_context(cafile=CA_BUNDLE if os.path.isfile(CA_BUNDLE) else None)
    return urllib.request.urlopen(request, context=context, timeout=timeout)


def status_of(url, login):
    """The HTTP status the index answers `url` with (0 when it cannot be reached at all)."""
    try:
        with open_with_login(url.rstrip("/") + "/", login, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def main(urls):
    for url in filter(None, urls):
        host = (urlsplit(url).hostname or "").lower()
        login = login_for(host)
        status = status_of(url, login)
        if status not in (401, 403):
            continue
        if login:
            print(f"torchdev: the index {shown(url)} refused the login the build was given for {host} (HTTP {status}): "
                  f"check the token for {host} in {ROUTE}", file=sys.stderr)
        else:
            print(f"torchdev: the index {shown(url)} asks for a login (HTTP {status}) and the build was given none for "
                  f"{host}: give it through {ROUTE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
