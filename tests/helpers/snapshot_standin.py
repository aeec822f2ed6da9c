"""A stand-in for an apt snapshot service (snapshot.debian.org's layout, /<archive>/<timestamp>/dists/...), which this
host cannot reach: it serves each request by forwarding it to the archive the base's own sources name, and remembers
every path apt asks for. Given a login, it answers 401 to every request without it, as a private archive does."""
from __future__ import annotations

import base64
import re
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SHOW_SOURCES = ["sh", "-c", "cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null"]


class SnapshotStandIn(ThreadingHTTPServer):
    """Serves /<archive>/<timestamp>/<path> from upstream[archive]/<path>, remembering what was asked (and, with a
    `login`, whether the request carried it: `refused` lists the paths answered 401)."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], upstream: dict[str, str],
                 login: tuple[str, str] | None = None) -> None:
        super().__init__(address, _Forward)
        self.upstream = upstream
        self.requests: list[str] = []
        self.refused: list[str] = []
        self.expected = "Basic " + base64.b64encode(":".join(login).encode()).decode() if login else None

    @property
    def url(self) -> str:
        return f"http://{self.server_address[0]}:{self.server_address[1]}"

    def start(self) -> SnapshotStandIn:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Forward(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # apt keeps connections open and pipelines its requests
    server: SnapshotStandIn

    def do_GET(self) -> None:  # noqa: N802 (the name http.server looks for)
        if self.server.expected and self.headers.get("Authorization") != self.server.expected:
            self.server.refused.append(self.path)
            self._reply(401, b"", {"WWW-Authenticate": 'Basic realm="private archive"'})
            return
        self.server.requests.append(self.path)
        archive, _, rest = self.path.lstrip("/").partition("/")
        _, _, rest = rest.partition("/")  # the timestamp: the stand-in serves today's archive for any
        status, body = 404, b""
        if archive in self.server.upstream:
            try:
                with urllib.request.urlopen(f"{self.server.upstream[archive]}/{rest}", timeout=60) as response:
                    status, body = response.status, response.read()
            except urllib.error.HTTPError as error:
                status = error.code
        self._reply(status, body)

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def base_archives(containers, base: str) -> dict[str, str]:
    """archive -> URI, from the base image's own apt sources (so no mirror host is written here)."""
    uris = re.findall(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", containers.run(base, SHOW_SOURCES).output, flags=re.M)
    return {uri.rstrip("/").rsplit("/", 1)[-1]: uri.rstrip("/") for uri in uris}


def bridge_gateway(docker_client) -> str:
    """The docker bridge's gateway address: where a build's RUN step reaches a server listening on this host."""
    return docker_client.networks.get("bridge").attrs["IPAM"]["Config"][0]["Gateway"]
