"""The dashboard's web server: the standard library's threading HTTP server, a JSON API and a
small page of our own (HTML, CSS and JavaScript in ``static/``, plots drawn as SVG by that
script). Nothing is fetched from anywhere else, so it works on a machine without internet.

Why the standard library rather than a web framework: the API is a dozen routes on one
machine for one user; what matters is that the guards of :mod:`prunekit.dashboard.access`
are explicit, in one place, and tested, and that ``prunekit dashboard`` works on every install
of prunekit with no extra package to fetch.

>>> import tempfile
>>> board = Dashboard([tempfile.mkdtemp()], port=0)
>>> board.url.startswith("http://127.0.0.1:") and "?token=" in board.url
True
>>> board.close()
"""

from __future__ import annotations

import http.cookies
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from prunekit.dashboard.access import AccessDenied, AccessPolicy, new_token, resolve_inside
from prunekit.dashboard.api import ROUTES, Request
from prunekit.dashboard.jobs import Jobs
from prunekit.dashboard.workspace import Workspace
from prunekit.runs.store import StoreError

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
TEXT_TYPES = {".md", ".csv", ".json", ".yaml", ".yml", ".txt", ".log"}
PAGE_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
               "connect-src 'self'; frame-src 'self'; base-uri 'none'; form-action 'none'; "
               "frame-ancestors 'none'")
FILE_POLICY = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"
"""Run files are shown sandboxed: a report (or anything planted in a run folder) cannot run
script in the dashboard's origin, where the token lives."""


class _Reply(Exception):
    """A finished response: status, body and headers (raised to unwind from deep checks)."""

    def __init__(self, status: int, body: bytes, content_type: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.content_type = status, body, content_type
        self.headers = headers or {}


def _json(status: int, value: Any) -> _Reply:
    return _Reply(status, json.dumps(value, allow_nan=False, default=str).encode(),
                  "application/json")


def _static(name: str) -> bytes:
    return resources.files("prunekit.dashboard").joinpath("static", name).read_bytes()


class _Handler(BaseHTTPRequestHandler):
    server_version = "prunekit-dashboard"
    board: Dashboard  # set on the subclass made per server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._respond("GET")

    def do_POST(self) -> None:
        self._respond("POST")

    def _respond(self, method: str) -> None:
        try:
            self._route(method)
        except _Reply as reply:
            self._send(reply)
        except AccessDenied as refused:
            self._send(_json(refused.status, {"error": str(refused)}))
        except Exception as exc:  # a bug must not kill the server, and must be seen
            log.exception("dashboard: %s %s failed", method, self.path)
            self._send(_json(500, {"error": f"internal error: {exc}"}))

    def _send(self, reply: _Reply) -> None:
        self.send_response(reply.status)
        headers = {"Content-Type": reply.content_type, "Content-Length": str(len(reply.body)),
                   "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
                   "Referrer-Policy": "no-referrer", "X-Frame-Options": "SAMEORIGIN",
                   "Cross-Origin-Resource-Policy": "same-origin", **reply.headers}
        headers.setdefault("Content-Security-Policy", PAGE_POLICY)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    def _route(self, method: str) -> None:
        policy = self.board.policy
        url = urlsplit(self.path)
        path, query = unquote(url.path), dict(parse_qsl(url.query))
        headers = {k: v for k, v in self.headers.items()}
        if not policy.host_allowed(headers.get("Host")):
            raise AccessDenied(403, "unknown Host: open the dashboard at the address it printed")
        cookies = {k: m.value for k, m in http.cookies.SimpleCookie(
            headers.get("Cookie", "")).items()}
        if not policy.token_valid(policy.request_token(headers, query, cookies)):
            raise AccessDenied(401, "this dashboard needs its token: open the URL that "
                                    "`prunekit dashboard` printed (it ends in ?token=…)")
        if method == "POST":
            policy.check_post(headers)
        if method == "GET" and "token" in query and not path.startswith("/api/"):
            cookie = (f"{policy.cookie_name}={policy.token}; HttpOnly; SameSite=Strict; "
                      "Path=/")
            raise _Reply(303, b"", "text/plain", {"Location": path, "Set-Cookie": cookie})
        if path == "/" and method == "GET":
            page = _static("index.html").replace(b"{{TOKEN}}", policy.token.encode())
            raise _Reply(200, page, STATIC_TYPES[".html"])
        if path.startswith("/static/") and method == "GET":
            self._static_file(path.removeprefix("/static/"))
        if path.startswith("/files/") and method == "GET":
            self._run_file(path.removeprefix("/files/"))
        self._api(method, path, query)

    def _static_file(self, name: str) -> None:
        suffix = Path(name).suffix
        if "/" in name or name.startswith(".") or suffix not in STATIC_TYPES:
            raise AccessDenied(404, f"no asset {name!r}")
        try:
            body = _static(name)
        except (FileNotFoundError, IsADirectoryError):
            raise AccessDenied(404, f"no asset {name!r}") from None
        raise _Reply(200, body, STATIC_TYPES[suffix])

    def _run_file(self, rest: str) -> None:
        root, _, relative = rest.partition("/")
        if not root.isdigit():
            raise AccessDenied(404, "a file is /files/<run directory number>/<path>")
        file = resolve_inside(self.board.workspace.roots, int(root), relative)
        suffix = file.suffix.lower()
        if suffix == ".html":
            raise _Reply(200, file.read_bytes(), "text/html; charset=utf-8",
                         {"Content-Security-Policy": FILE_POLICY})
        if suffix in TEXT_TYPES:
            raise _Reply(200, file.read_bytes(), "text/plain; charset=utf-8",
                         {"Content-Security-Policy": FILE_POLICY})
        raise _Reply(200, file.read_bytes(), "application/octet-stream", {
            "Content-Disposition": f'attachment; filename="{file.name}"',
            "Content-Security-Policy": FILE_POLICY})

    def _body(self) -> dict[str, Any]:
        length = self.headers.get("Content-Length", "0")
        if not length.isdigit() or int(length) > MAX_BODY_BYTES:
            raise _json(413, {"error": f"the request body must be at most {MAX_BODY_BYTES} bytes"})
        try:
            body = json.loads(self.rfile.read(int(length)) or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _json(400, {"error": "the request body is not JSON"}) from None
        if not isinstance(body, dict):
            raise _json(400, {"error": "the request body must be a JSON object"})
        return body

    def _api(self, method: str, path: str, query: dict[str, str]) -> None:
        allowed = [m for (m, pattern) in ROUTES if pattern.fullmatch(path)]
        if not allowed:
            raise _json(404, {"error": f"no page or API at {path!r}"})
        if method not in allowed:
            raise _json(405, {"error": f"{path} takes {', '.join(allowed)}"})
        match, route = next((pattern.fullmatch(path), route)
                            for (m, pattern), route in ROUTES.items()
                            if m == method and pattern.fullmatch(path))
        assert match is not None
        body = self._body() if method == "POST" else {}
        try:
            result = route(self.board, Request(match.groups(), query, body))
        except KeyError as exc:
            raise _json(404, {"error": f"no run, job or variant {exc.args[0]!r}"}) from None
        except (ValueError, StoreError) as exc:
            raise _json(400, {"error": str(exc)}) from None
        raise _json(200, result)


class Dashboard:
    """A dashboard over ``roots`` on ``host``:``port`` (0 picks a free port)."""

    def __init__(self, roots: list[str | Path], *, host: str = "127.0.0.1", port: int = 8765,
                 token: str | None = None) -> None:
        folders = [Path(r) for r in roots]
        missing = [str(f) for f in folders if not f.is_dir()]
        if missing:
            raise ValueError(f"run directory {missing[0]!r} does not exist; give a folder that "
                             "holds runs (e.g. runs/demo after `make demo`)")
        self.workspace = Workspace(folders)
        self.jobs = Jobs(self.workspace.roots)
        self.compute = threading.Lock()
        handler = type("Handler", (_Handler,), {"board": self})
        try:
            self.httpd = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise ValueError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another "
                             "--port") from None
        self.httpd.daemon_threads = True
        self.policy = AccessPolicy(token or new_token(), host, self.httpd.server_address[1])
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The address to open, token included."""
        return f"http://{self.policy.host}:{self.policy.port}/?token={self.policy.token}"

    def serve_forever(self) -> None:
        """Answer requests until interrupted (what ``prunekit dashboard`` does)."""
        try:
            self.httpd.serve_forever()
        finally:
            self.close()

    def start(self) -> Dashboard:
        """Answer requests from a background thread (for tests and notebooks)."""
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and cancel the runs this dashboard launched."""
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join()
            self._thread = None
        self.jobs.shutdown()
        self.httpd.server_close()
