"""A private pip index for tests: every request without the right login gets 401, as a corporate index answers.

It serves PyPI's /simple/ page of any package asked for by forwarding the request to PyPI from this host (through the
host's proxy, trusting its CA bundle: PIP_CERT, SSL_CERT_FILE or REQUESTS_CA_BUNDLE), so the files themselves still
come from files.pythonhosted.org with the hashes a lock pins; and one tiny wheel of its own, the canary, which only it
serves: a build or a lock that has the canary got it through the login. It remembers every request and whether it
carried the login, which is what the tests check.
"""
from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import ssl
import threading
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PYPI = "https://pypi.org/simple"


@dataclass(frozen=True)
class Wheel:
    """A wheel's file name and bytes."""

    name: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def canary_wheel(project: str, version: str, value: str) -> Wheel:
    """A pure-Python wheel of `project` whose module holds `value` (VALUE), made here: nothing else serves it."""
    module = project.replace("-", "_")
    dist_info = f"{module}-{version}.dist-info"
    files = {f"{module}/__init__.py": f'VALUE = "{value}"\n',
             f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n",
             f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: torchdev-tests\nRoot-Is-Purelib: true\n"
                                   "Tag: py3-none-any\n"}
    record = "".join(f"{name},sha256={_record_hash(text.encode())},{len(text.encode())}\n"
                     for name, text in files.items()) + f"{dist_info}/RECORD,,\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, text in {**files, f"{dist_info}/RECORD": record}.items():
            info = zipfile.ZipInfo(name, date_time=(2000, 1, 1, 0, 0, 0))
            wheel.writestr(info, text)
    return Wheel(f"{module}-{version}-py3-none-any.whl", buffer.getvalue())


def _record_hash(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _ca_context() -> ssl.SSLContext:
    bundle = next((os.environ[name] for name in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
                   if os.environ.get(name)), None)
    return ssl.create_default_context(cafile=bundle)


class AuthIndex(ThreadingHTTPServer):
    """The index at http://HOST:PORT/simple/, with the login `user`/`password` and the canary wheel of `project`."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], *, user: str, password: str, project: str, wheel: Wheel) -> None:
        super().__init__(address, _Handler)
        self.expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.project, self.wheel = project, wheel
        self.requests: list[tuple[str, bool]] = []
        """(path, whether it carried the login), in order."""
        self.context = _ca_context()

    @property
    def url(self) -> str:
        return f"http://{self.server_address[0]}:{self.server_address[1]}/simple"

    def start(self) -> AuthIndex:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def asked(self, project: str, *, authorized: bool) -> list[str]:
        """The paths asked for `project`'s page or files, with or without the login."""
        return [path for path, ok in self.requests if ok == authorized and project in path]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: AuthIndex

    def do_HEAD(self) -> None:  # noqa: N802 - uv asks a wheel's size before it reads its metadata
        self.head_only = True
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802 (the name http.server looks for)
        authorized = self.headers.get("Authorization") == self.server.expected
        self.server.requests.append((self.path, authorized))
        if not authorized:
            self._reply(401, b"a login is needed\n", "text/plain", {"WWW-Authenticate": 'Basic realm="private index"'})
            return
        found = re.fullmatch(r"/simple/([^/]+)/?", self.path.split("?")[0])
        if self.path == f"/files/{self.server.wheel.name}":
            self._reply(200, self.server.wheel.data, "application/octet-stream")
        elif found and _normalized(found[1]) == _normalized(self.server.project):
            wheel = self.server.wheel
            page = (f'<!DOCTYPE html><html><body><a href="/files/{wheel.name}#sha256={wheel.sha256}">{wheel.name}'
                    "</a></body></html>\n")
            self._reply(200, page.encode(), "text/html")
        elif found:
            self._forward(found[1])
        else:
            self._reply(404, b"not found\n", "text/plain")

    def _forward(self, project: str) -> None:
        """PyPI's page for `project`, in whichever form the client asked (pip and uv prefer PEP 691's JSON)."""
        request = urllib.request.Request(f"{PYPI}/{project}/",
                                         headers={"Accept": self.headers.get("Accept", "text/html")})
        try:
            with urllib.request.urlopen(request, context=self.server.context, timeout=60) as response:
                self._reply(response.status, response.read(), response.headers.get("Content-Type", "text/html"))
        except urllib.error.HTTPError as error:
            self._reply(error.code, b"", "text/plain")

    def _reply(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in {"Content-Type": content_type, "Content-Length": str(len(body)),
                           "Cache-Control": "no-store", **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        if not getattr(self, "head_only", False):
            self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
