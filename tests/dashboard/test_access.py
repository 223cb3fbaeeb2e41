"""Access rules: files only inside the run directories, the token, Host and Origin checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from prunekit.dashboard.access import TOKEN_HEADER, AccessDenied, AccessPolicy, resolve_inside


@pytest.fixture
def roots(tmp_path: Path) -> list[Path]:
    root = tmp_path / "runs"
    (root / "demo").mkdir(parents=True)
    (root / "demo" / "report.md").write_text("# demo")
    (tmp_path / "secret.txt").write_text("outside")
    (root / "demo" / "escape").symlink_to(tmp_path / "secret.txt")
    (root / "demo" / "inside").symlink_to(root / "demo" / "report.md")
    return [root]


@pytest.mark.parametrize("relative", [
    "../secret.txt", "demo/../../secret.txt", "/etc/passwd", "demo/escape", "demo\\..\\x",
    "demo//report.md", "./demo/report.md", "demo/report.md\x00.png", "",
])
def test_nothing_outside_a_run_directory_is_reachable(roots: list[Path], relative: str) -> None:
    with pytest.raises(AccessDenied) as refused:
        resolve_inside(roots, 0, relative)
    assert refused.value.status == 403


def test_files_inside_resolve_even_through_inner_links(roots: list[Path]) -> None:
    assert resolve_inside(roots, 0, "demo/report.md").read_text() == "# demo"
    assert resolve_inside(roots, 0, "demo/inside").name == "report.md"
    for root_index, relative in ((1, "demo/report.md"), (0, "demo/missing.md"), (0, "demo")):
        with pytest.raises(AccessDenied) as refused:
            resolve_inside(roots, root_index, relative)
        assert refused.value.status == 404


def test_hosts_origins_and_posts() -> None:
    local = AccessPolicy("tok", "127.0.0.1", 8765)
    assert local.host_allowed("127.0.0.1:8765") and local.host_allowed("localhost:8765")
    assert not local.host_allowed("127.0.0.1:9999") and not local.host_allowed("attacker.test:8765")
    assert not local.host_allowed(None)
    exposed = AccessPolicy("tok", "0.0.0.0", 8765)
    assert exposed.host_allowed("myserver.lan:8765")  # explicit --host: the token guards it
    good = {TOKEN_HEADER: "tok", "Host": "127.0.0.1:8765", "Origin": "http://127.0.0.1:8765",
            "Content-Type": "application/json"}
    local.check_post(good)
    for change, needle in (({TOKEN_HEADER: "wrong"}, "token"),
                           ({"Origin": "http://attacker.test"}, "cross-site"),
                           ({"Content-Type": "text/plain"}, "JSON")):
        with pytest.raises(AccessDenied, match=needle) as refused:
            local.check_post({**good, **change})
        assert refused.value.status == 403
    assert local.token_valid("tok") and not local.token_valid("to") and not local.token_valid(None)
