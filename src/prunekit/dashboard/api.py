"""The dashboard's JSON API: one plain function per route, registered in :data:`ROUTES`.

Each takes the :class:`~prunekit.dashboard.server.Dashboard` and the request and returns
something JSON can carry. Bad input raises :class:`ValueError` (answered 400 with its one
line), an unknown run or job :class:`KeyError` (404). Pruning, measuring and sweeping hold the
dashboard's compute lock: the CPU does one of them at a time, so each one's latency is timed on
a machine the dashboard itself is not loading.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prunekit.dashboard.export_choice import recipe_stage, save_pruned
from prunekit.dashboard.structure import describe_structure
from prunekit.dashboard.whatif import parse_choice, sensitivity_sweep, try_choice

if TYPE_CHECKING:
    from prunekit.dashboard.server import Dashboard

LAUNCH_TEMPLATE = """\
# A small recipe to start from: an MLP on scikit-learn's 8×8 digits, pruned two ways.
name: digits-mlp
data: {name: digits}
model: {name: mlp, kwargs: {in_features: 64, hidden: [64, 32]}}
train: {epochs: 20, lr: 0.01}
measure: {repeats: 20}
variants:
  - name: magnitude-80
    stages:
      - prune: {sparsity: 0.8}
      - train: {epochs: 5}
  - name: half-neurons
    stages:
      - structured: {ratio: 0.5, criterion: l2}
      - train: {epochs: 5}
"""


@dataclass
class Request:
    """What a route sees of an HTTP request."""

    params: tuple[str, ...]
    query: dict[str, str]
    body: dict[str, Any]


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"'{key}' is required (a string)")
    return value


def list_runs(app: Dashboard, request: Request) -> Any:
    return {"runs": app.workspace.runs(), "roots": [str(r) for r in app.workspace.roots]}


def get_run(app: Dashboard, request: Request) -> Any:
    return app.workspace.run(request.params[0])


def get_events(app: Dashboard, request: Request) -> Any:
    after = request.query.get("after", "0")
    if not after.isdigit():
        raise ValueError("after must be a sequence number (0 or more)")
    return {"events": app.workspace.events(request.params[0], int(after))}


def get_structure(app: Dashboard, request: Request) -> Any:
    subject = app.workspace.subject(request.params[0], request.query.get("variant", "baseline"))
    criterion = request.query.get("criterion", "l2")
    key = f"structure:{criterion}"
    with app.compute:
        if key not in subject.cache:
            subject.cache[key] = describe_structure(subject.model, subject.example,
                                                    criterion=criterion,
                                                    data=subject.train_batches)
    return subject.cache[key]


def post_whatif(app: Dashboard, request: Request) -> Any:
    subject = app.workspace.subject(request.params[0], _text(request.body, "variant"))
    choice = parse_choice(request.body.get("choice") or {})
    with app.compute:
        return try_choice(subject, choice)


def post_sensitivity(app: Dashboard, request: Request) -> Any:
    run_id = request.params[0]
    subject = app.workspace.subject(run_id, _text(request.body, "variant"))
    granularity = request.body.get("granularity", "structured")
    if granularity not in ("structured", "unstructured"):
        raise ValueError("granularity must be 'structured' or 'unstructured'")
    with app.compute:
        points = sensitivity_sweep(subject, granularity)
    app.workspace.store_of(run_id).add_sensitivity(run_id, points)
    return {"points": points}


def post_export(app: Dashboard, request: Request) -> Any:
    run_id = request.params[0]
    subject = app.workspace.subject(run_id, _text(request.body, "variant"))
    choice = parse_choice(request.body.get("choice") or {})
    kind = request.body.get("as")
    if kind not in ("stage", "model"):
        raise ValueError("'as' must be 'stage' (a recipe stage) or 'model' (a model file)")
    run = app.workspace.run(run_id)
    with app.compute:
        if kind == "stage":
            return recipe_stage(subject, choice, run["command"])
        path = save_pruned(subject, choice)
    root = app.workspace.roots[run["root"]]
    return {"file": path.resolve().relative_to(root).as_posix(), "root": run["root"],
            "bytes": path.stat().st_size}


def list_jobs(app: Dashboard, request: Request) -> Any:
    return {"jobs": app.jobs.states(), "template": LAUNCH_TEMPLATE,
            "roots": [str(r) for r in app.workspace.roots]}


def post_launch(app: Dashboard, request: Request) -> Any:
    root = request.body.get("root", 0)
    if isinstance(root, bool) or not isinstance(root, int):
        raise ValueError("root must be the number of a run directory")  # noqa: TRY004 (bad input)
    job = app.jobs.launch(_text(request.body, "recipe"), _text(request.body, "name"), root)
    return job.state()


def post_cancel(app: Dashboard, request: Request) -> Any:
    return app.jobs.cancel(request.params[0]).state()


Route = Callable[["Dashboard", Request], Any]

_ID = r"([0-9a-f]{12,32})"
ROUTES: dict[tuple[str, re.Pattern[str]], Route] = {
    ("GET", re.compile(r"/api/runs")): list_runs,
    ("GET", re.compile(rf"/api/runs/{_ID}")): get_run,
    ("GET", re.compile(rf"/api/runs/{_ID}/events")): get_events,
    ("GET", re.compile(rf"/api/runs/{_ID}/structure")): get_structure,
    ("POST", re.compile(rf"/api/runs/{_ID}/whatif")): post_whatif,
    ("POST", re.compile(rf"/api/runs/{_ID}/sensitivity")): post_sensitivity,
    ("POST", re.compile(rf"/api/runs/{_ID}/export")): post_export,
    ("GET", re.compile(r"/api/jobs")): list_jobs,
    ("POST", re.compile(r"/api/jobs")): post_launch,
    ("POST", re.compile(rf"/api/jobs/{_ID}/cancel")): post_cancel,
}
"""(method, full-path pattern) → route; the groups of the pattern are ``Request.params``."""
