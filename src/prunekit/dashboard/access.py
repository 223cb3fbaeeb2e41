"""Who may talk to the dashboard, and which files it may show.

The dashboard runs recipes and writes model files, so it is guarded as Jupyter guards a
notebook server, plus what a local web app needs against other web pages:

- a random **token** in the URL printed at start; every request without it is refused (401).
  The first page load trades it for an HttpOnly, SameSite=Strict cookie, so assets load and
  the token leaves the address bar;
- the **Host** header must name the address the server was bound to, so a page on another
  site cannot reach it through DNS rebinding (403);
- **state-changing requests are POSTs** that must carry the token in an ``X-Prunekit-Token``
  header (a cross-site page cannot set one without a CORS preflight, which is never granted),
  a JSON body, and an ``Origin`` equal to the dashboard's own when a browser sends one (403);
- **files** are read only below the run directories given on the command line: a request names
  a root by index and a relative path, and the path resolved (symlinks followed) must stay
  inside that root. ``..``, absolute paths, encoded separators and NUL bytes are refused.

>>> policy = AccessPolicy("s3cret", host="127.0.0.1", port=8765)
>>> policy.host_allowed("localhost:8765"), policy.host_allowed("evil.example:8765")
(True, False)
>>> policy.origin_allowed("http://127.0.0.1:8765", "127.0.0.1:8765")
True
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

TOKEN_HEADER = "X-Prunekit-Token"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


class AccessDenied(Exception):
    """A request that must not be served; ``status`` is 401, 403 or 404."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def new_token() -> str:
    """A fresh random token (32 bytes of entropy, URL-safe)."""
    return secrets.token_urlsafe(32)


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine.

    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class AccessPolicy:
    """The token and the address the server is bound to."""

    token: str
    host: str
    port: int

    @property
    def cookie_name(self) -> str:
        return f"prunekit_token_{self.port}"  # cookies ignore ports: two dashboards, two names

    def token_valid(self, candidate: str | None) -> bool:
        return bool(candidate) and hmac.compare_digest(candidate.encode(), self.token.encode())

    def request_token(self, headers: Mapping[str, str], query: Mapping[str, str],
                      cookies: Mapping[str, str]) -> str | None:
        """The token a request carries, from the header, the query or the cookie."""
        return (headers.get(TOKEN_HEADER) or query.get("token")
                or cookies.get(self.cookie_name))

    def host_allowed(self, host_header: str | None) -> bool:
        """Loopback servers answer only to loopback names; one bound elsewhere (explicit
        ``--host``) answers to any name, and the token is what guards it."""
        if not host_header:
            return False
        if not is_loopback(self.host):
            return True
        return host_header in {f"{name}:{self.port}" for name in LOOPBACK_NAMES}

    def origin_allowed(self, origin: str | None, host_header: str | None) -> bool:
        """A browser's ``Origin`` must be the dashboard's own; tools that send none pass."""
        if origin is None:
            return True
        return origin == f"http://{host_header}"

    def check_post(self, headers: Mapping[str, str]) -> None:
        """Raise :class:`AccessDenied` unless a POST is one the dashboard's own page made."""
        if not self.token_valid(headers.get(TOKEN_HEADER)):
            raise AccessDenied(403, f"a POST needs the token in the {TOKEN_HEADER} header")
        if not self.origin_allowed(headers.get("Origin"), headers.get("Host")):
            raise AccessDenied(403, "cross-site request refused (Origin is not this dashboard)")
        if not (headers.get("Content-Type") or "").startswith("application/json"):
            raise AccessDenied(403, "a POST must send JSON (Content-Type: application/json)")


def resolve_inside(roots: Sequence[Path], root_index: int, relative: str) -> Path:
    """The existing file ``relative`` below ``roots[root_index]``; :class:`AccessDenied`
    for anything that would leave it.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp()); _ = (root / "report.md").write_text("#")
    >>> resolve_inside([root], 0, "report.md").name
    'report.md'
    >>> try:
    ...     resolve_inside([root], 0, "../etc/passwd")
    ... except AccessDenied as refused:
    ...     print(refused.status, refused)
    403 path '../etc/passwd' leaves the run directory
    """
    if not 0 <= root_index < len(roots):
        raise AccessDenied(404, f"no run directory number {root_index}")
    parts = relative.split("/")
    if (not relative or "\\" in relative or "\x00" in relative or os.path.isabs(relative)
            or any(p in ("", ".", "..") for p in parts)):
        raise AccessDenied(403, f"path {relative!r} leaves the run directory")
    root = roots[root_index].resolve()
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root):
        raise AccessDenied(403, f"path {relative!r} leaves the run directory")
    if not candidate.is_file():
        raise AccessDenied(404, f"no file {relative!r} in run directory {root_index}")
    return candidate
