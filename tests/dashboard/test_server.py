"""The server as a client meets it: the token, Host and Origin guards, traversal, the API."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import pytest

from prunekit.dashboard import Dashboard
from prunekit.dashboard.access import TOKEN_HEADER


def request(board: Dashboard, method: str, path: str, *, token: bool = True, body=None,
            headers: dict | None = None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", board.policy.port, timeout=60)
    sent = {"Host": f"127.0.0.1:{board.policy.port}"}
    if token:
        sent[TOKEN_HEADER] = board.policy.token
    if body is not None:
        sent["Content-Type"] = "application/json"
        body = json.dumps(body)
    sent.update(headers or {})
    conn.request(method, path, body=body, headers=sent)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, dict(response.getheaders()), data


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/api/runs", "/files/0/tiny/report.md",
                                  "/api/jobs"])
def test_every_request_without_the_token_is_refused(board: Dashboard, path: str) -> None:
    assert request(board, "GET", path, token=False)[0] == 401
    assert request(board, "GET", path, token=False, headers={TOKEN_HEADER: "guess"})[0] == 401
    assert request(board, "GET", path)[0] == 200


def test_the_url_token_becomes_a_cookie(board: Dashboard) -> None:
    status, headers, _ = request(board, "GET", f"/?token={board.policy.token}", token=False)
    assert status == 303 and headers["Location"] == "/"
    cookie = headers["Set-Cookie"].split(";")[0]
    assert "HttpOnly" in headers["Set-Cookie"] and "SameSite=Strict" in headers["Set-Cookie"]
    status, headers, page = request(board, "GET", "/", token=False, headers={"Cookie": cookie})
    assert status == 200 and b"prunekit" in page
    assert "script-src 'self'" in headers["Content-Security-Policy"]


def test_other_hosts_are_refused(board: Dashboard) -> None:
    status, _, body = request(board, "GET", "/api/runs", headers={"Host": f"attacker.test:{board.policy.port}"})
    assert status == 403 and b"Host" in body


@pytest.mark.parametrize("path", [
    "/files/0/../../etc/passwd", "/files/0/%2e%2e/%2e%2e/etc/passwd", "/files/0/tiny/..%2F..%2Fetc%2Fpasswd",
    "/files/0//etc/passwd", "/files/0/%2Fetc%2Fpasswd", "/files/0/tiny/escape", "/files/1/tiny/report.md",
    "/files/x/tiny/report.md", "/static/../server.py", "/static/%2e%2e%2fserver.py",
])
def test_traversal_is_refused(board: Dashboard, runs_root: Path, path: str) -> None:
    escape = runs_root / "tiny" / "escape"
    if not escape.is_symlink():
        escape.symlink_to("/etc/passwd")
    status, _, body = request(board, "GET", path)
    assert status in (403, 404)
    assert b"root:" not in body and b"import" not in body


def test_run_files_are_served_sandboxed(board: Dashboard) -> None:
    status, headers, body = request(board, "GET", "/files/0/tiny/report.html")
    assert status == 200 and body.startswith(b"<!doctype html>")
    assert headers["Content-Security-Policy"].startswith("sandbox")
    status, headers, _ = request(board, "GET", "/files/0/tiny/baseline/model.safetensors")
    assert status == 200 and headers["Content-Disposition"].startswith("attachment")


def test_posts_need_the_header_token_json_and_our_origin(board: Dashboard, run_id: str) -> None:
    path = f"/api/runs/{run_id}/whatif"
    body = {"variant": "baseline", "choice": {"granularity": "structured", "amount": 0.5}}
    cookie = {"Cookie": f"{board.policy.cookie_name}={board.policy.token}"}
    assert request(board, "POST", path, token=False, body=body, headers=cookie)[0] == 403
    assert request(board, "POST", path, body=body, headers={"Origin": "http://attacker.test"})[0] == 403
    assert request(board, "POST", path, body=body, headers={"Content-Type": "text/plain"})[0] == 403
    assert request(board, "GET", path)[0] == 405
    status, _, data = request(board, "POST", path, body=body,
                              headers={"Origin": f"http://127.0.0.1:{board.policy.port}"})
    assert status == 200
    result = json.loads(data)
    assert result["after"]["macs"] < result["before"]["macs"]


def test_api_answers_and_bad_input_is_one_line(board: Dashboard, run_id: str) -> None:
    status, _, data = request(board, "GET", "/api/runs")
    runs = json.loads(data)["runs"]
    assert status == 200 and [r["title"] for r in runs if r["id"] == run_id] == ["tiny digits"]
    status, _, data = request(board, "GET", f"/api/runs/{run_id}")
    run = json.loads(data)
    assert [r["name"] for r in run["rows"]] == ["baseline", "half", "thin"]
    assert "tiny/report.html" in run["files"]
    assert request(board, "GET", "/api/runs/0123456789abcdef")[0] == 404
    status, _, data = request(board, "POST", f"/api/runs/{run_id}/whatif",
                              body={"variant": "baseline", "choice": {"granularity": "neurons"}})
    assert status == 400 and json.loads(data)["error"] == "granularity must be 'structured' or 'unstructured'"
    status, _, _ = request(board, "POST", f"/api/runs/{run_id}/whatif", body={},
                           headers={"Content-Length": str(2 * 1024 * 1024)})
    assert status == 413
