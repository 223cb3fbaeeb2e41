"""``prunekit dashboard`` as a user starts it: one URL with a token, one-line errors, clean stop."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prunekit.cli import app

runner = CliRunner()


@pytest.mark.parametrize(("args", "message"), [
    (["dashboard", "no/such/runs"], "run directory 'no/such/runs' does not exist"),
    (["dashboard", ".", "--port", "70000"], "--port 70000"),
])
def test_bad_input_is_one_line(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and message in result.output
    assert "Traceback" not in result.output


def test_it_prints_a_tokened_url_refuses_without_it_and_stops_on_sigterm(tmp_path: Path) -> None:
    server = subprocess.Popen([sys.executable, "-m", "prunekit", "dashboard", str(tmp_path),
                               "--port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        url = re.fullmatch(r"prunekit dashboard: (http://127\.0\.0\.1:\d+/\?token=[\w-]{40,})\n", line)
        assert url, line
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url.group(1).split("?")[0] + "api/runs", timeout=30)
        assert refused.value.code == 401
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        with browser.open(url.group(1), timeout=30) as page:  # token → cookie → the page
            assert page.url.endswith("/") and b"prunekit dashboard" in page.read()
    finally:
        server.send_signal(signal.SIGTERM)
        out, _ = server.communicate(timeout=60)
    assert server.returncode == 0 and "dashboard stopped" in out
