"""The dashboard in a real Chromium (Debian's, driven by Playwright) on a real tiny run.

Screenshots are kept in tests/artifacts/ (ignored by git) for a person to look at. `make test`
installs Chromium and sets PRUNEKIT_BROWSER_TESTS=required, so CI fails rather than skips
when the browser is missing; run alone, these tests skip with the reason instead.
"""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from prunekit.dashboard import Dashboard
from prunekit.runs import RunStore

CHROMIUM = os.environ.get("PRUNEKIT_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
WAIT_MS = 90_000  # a loaded 2-core machine is slow; a hang still fails


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -c constraints.txt -e '.[dev]')"
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set PRUNEKIT_CHROMIUM)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator:
    missing = _missing()
    if missing:
        if os.environ.get("PRUNEKIT_BROWSER_TESTS") == "required":
            pytest.fail(missing)
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def page(browser, board: Dashboard) -> Iterator:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(WAIT_MS)
    tab = context.new_page()
    tab.errors = []
    tab.on("pageerror", lambda exc: tab.errors.append(str(exc)))
    tab.on("console", lambda m: tab.errors.append(m.text) if m.type == "error" else None)
    tab.goto(board.url)
    yield tab
    context.close()


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)
    assert page.errors == []


def open_tab(page, run_id: str, tab: str) -> None:
    page.evaluate(f"location.hash = '#/run/{run_id}/{tab}'")
    page.locator(f"#tab-{tab}.active").wait_for()


def test_the_runs_list_filters_and_opens_a_run(page, run_id: str) -> None:
    page.locator(f'tr[data-run="{run_id}"]').wait_for()
    titles = page.locator("#runs tbody tr td:nth-child(2)")
    page.click('th[data-sort="title"]')
    assert titles.all_inner_texts() == ["digits structured pruning", "tiny digits"]
    page.click('th[data-sort="title"]')
    assert titles.all_inner_texts() == ["tiny digits", "digits structured pruning"]
    page.fill("#filter", "no such run")
    page.get_by_text("No run matches the filter.").wait_for()
    page.fill("#filter", "tiny")
    assert page.locator("#runs tbody tr").count() == 1
    shot(page, "runs")
    page.click(f'tr[data-run="{run_id}"] a')
    page.locator("#results").wait_for()


def test_a_run_shows_its_table_with_p95_and_its_pareto_plots(page, board: Dashboard,
                                                             run_id: str) -> None:
    open_tab(page, run_id, "results")
    table = page.locator("#results")
    headers = table.locator("th").all_inner_texts()
    assert headers[:5] == ["variant", "accuracy %", "Δ acc (pt)", "latency ms (p50)", "latency ms (p95)"]
    rows = board.workspace.run(run_id)["rows"]
    cells = table.locator("tbody tr").nth(2).locator("td").all_inner_texts()
    assert cells[0] == "thin" and cells[4] == f"{rows[2]['latency_p95_ms']:.3f}"
    assert cells[1] == f"{100 * rows[2]['accuracy']:.2f}"
    plots = page.locator("#pareto svg.scatter")
    assert plots.count() == 4
    for i in range(4):  # two variants as dots, the dense baseline as the diamond
        assert plots.nth(i).locator("circle.point").count() == 2
        assert plots.nth(i).locator("path.baseline").count() == 1
    shot(page, "results")


def test_two_runs_compare_side_by_side(page, board: Dashboard, run_id: str) -> None:
    pruned = next(r["id"] for r in board.workspace.runs() if r.get("kind") == "prune")
    page.evaluate("location.hash = '#/'")
    page.check(f'tr[data-run="{run_id}"] input.pick')
    page.check(f'tr[data-run="{pruned}"] input.pick')
    page.click("#compare")
    rows = page.locator("#compare-table tbody tr")
    rows.first.wait_for()
    assert [rows.nth(i).locator("td").nth(1).inner_text() for i in range(rows.count())] == [
        "baseline", "half", "thin", "before", "after"]
    plots = page.locator("#pareto svg.scatter")
    assert plots.count() == 4
    assert plots.first.locator("path.baseline").count() == 2  # each run's own baseline
    assert plots.first.locator("circle.point").count() == 3
    shot(page, "compare")


def test_layer_charts_show_channels_kept_and_shares(page, run_id: str) -> None:
    open_tab(page, run_id, "layers")
    page.select_option("#layer-variant", "thin")
    channels = page.locator("#chart-channels svg").text_content()
    assert "16 / 32" in channels and "8 / 16" in channels
    assert page.locator("#chart-shares rect.bar").count() == 6  # 3 layers × (MACs, time)
    shot(page, "layers")


def _set_amount(page, selector: str, value: float) -> None:
    page.locator(selector).evaluate(
        "(el, v) => { el.value = v; el.dispatchEvent(new Event('input'));"
        " el.dispatchEvent(new Event('change')); }", str(value))


def test_a_what_if_moves_the_numbers_and_can_be_kept(page, run_id: str) -> None:
    open_tab(page, run_id, "whatif")
    page.locator("#groups").wait_for()
    assert page.locator("svg.dag g.node").count() == 5  # input, 3 layers, output
    params = page.locator('#whatif-result td[data-metric="params"][data-which="after"]')
    _set_amount(page, '.group-amount[data-group="0"]', 0.5)
    page.wait_for_function("() => document.querySelector("
                           "'#whatif-result td[data-metric=params][data-which=after]')"
                           "?.textContent === '1,482'")
    accuracy_half = page.locator('#whatif-result td[data-metric="accuracy"][data-which="after"]').inner_text()
    _set_amount(page, '.group-amount[data-group="0"]', 0.75)
    page.wait_for_function("() => document.querySelector("
                           "'#whatif-result td[data-metric=params][data-which=after]')"
                           "?.textContent === '834'")
    assert params.inner_text() == "834"  # 8 of 32 neurons left in the first layer
    accuracy_quarter = page.locator('#whatif-result td[data-metric="accuracy"][data-which="after"]').inner_text()
    assert accuracy_quarter != accuracy_half
    page.click("#export-stage")
    stage = yaml.safe_load(page.locator("#stage-yaml").inner_text())
    assert stage["variants"][0]["stages"][-1]["structured"] == {
        "ratio": 0.75, "criterion": "l2", "scope": "layer", "ignore": ["net.3"],
        "latency_aware": False}
    page.click("#export-model")
    assert page.locator("#model-link").inner_text().startswith("tiny/whatif/baseline-")
    shot(page, "whatif")


def test_sensitivity_curves_are_measured_and_drawn(page, run_id: str) -> None:
    open_tab(page, run_id, "sensitivity")
    page.click("#measure-structured")
    page.locator("#sensitivity svg polyline").first.wait_for()
    assert page.locator("#sensitivity figure").count() == 2  # accuracy and loss
    assert page.locator("#sensitivity figure").first.locator("polyline").count() == 2  # 2 groups
    shot(page, "sensitivity")


def test_a_recipe_launched_from_the_page_shows_progress_and_cancels(page, board: Dashboard) -> None:
    page.evaluate("location.hash = '#/launch'")
    recipe = {"name": "long digits", "data": {"name": "digits"},
              "model": {"name": "mlp", "kwargs": {"in_features": 64, "hidden": [64]}},
              "train": {"epochs": 2000, "lr": 0.01}}
    page.fill("#recipe", yaml.safe_dump(recipe))
    page.fill("#run-name", "cancel-me")
    page.click("#launch")
    job = page.locator(".job").first
    job.locator(".epoch").wait_for()  # a training epoch with its loss, live
    assert "baseline: epoch" in job.locator(".epoch").inner_text()
    assert job.locator("svg.lines polyline").count() >= 1
    shot(page, "launch")
    job.locator("button.cancel").click()
    job.locator('[data-status="cancelled"]').wait_for()
    (run,) = RunStore(board.workspace.roots[0] / "cancel-me").runs()
    assert run["status"] == "cancelled"
    shot(page, "cancelled")


def test_refusals_seen_from_a_browser(browser, page, board: Dashboard) -> None:
    stranger = browser.new_context()
    response = stranger.new_page().goto(board.url.split("?")[0])
    assert response.status == 401 and "needs its token" in response.text()
    stranger.close()
    for path in ("/files/0/..%2F..%2F..%2Fetc%2Fpasswd", "/files/0/%2Fetc%2Fpasswd",
                 "/files/0/tiny/../../../../etc/passwd"):
        status = page.evaluate("async (p) => (await fetch(p)).status", path)
        assert status in (403, 404)
    before = len(board.jobs.states())
    attack = _attacker_page(board)
    try:  # another site on this machine: the cookie goes with its requests, the token cannot
        page.goto(attack.url)
        page.wait_for_function("() => document.title === 'done'")
    finally:
        attack.close()
    assert len(board.jobs.states()) == before
    assert not (board.workspace.roots[0] / "csrf").exists()


class _Attacker:
    def __init__(self, html: str) -> None:
        class Page(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(html.encode())

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Page)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _attacker_page(board: Dashboard) -> _Attacker:
    target = f"http://127.0.0.1:{board.policy.port}/api/jobs"
    body = '{"recipe": "name: x\\nmodel: {name: mlp}", "name": "csrf"}'
    return _Attacker(f"""<!doctype html><title>attacking</title><script>
      (async () => {{
        const tries = [
          {{method: "POST", mode: "no-cors", credentials: "include",
            headers: {{"Content-Type": "text/plain"}}, body: {body!r}}},
          {{method: "POST", credentials: "include",
            headers: {{"Content-Type": "application/json", "X-Prunekit-Token": "guess"}}, body: {body!r}}},
        ];
        for (const t of tries) {{ try {{ await fetch({target!r}, t); }} catch (e) {{}} }}
        document.title = "done";
      }})();
    </script>""")
