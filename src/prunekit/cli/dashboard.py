"""``prunekit dashboard``: explore runs in the browser, try prunings, launch recipes."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated

import typer

from prunekit.cli.console import console, errors, fail


def dashboard(
    runs_dirs: Annotated[list[Path] | None, typer.Argument(
        help="run directories to serve (default: runs)", show_default=False)] = None,
    port: Annotated[int, typer.Option(help="port to listen on (0: any free one)")] = 8765,
    host: Annotated[str, typer.Option(
        help="address to bind; anything but 127.0.0.1 exposes the dashboard to the network "
             "(the token still guards it)")] = "127.0.0.1",
) -> None:
    """Serve the dashboard on this machine and print its URL (with its access token)."""
    from prunekit.dashboard import Dashboard
    from prunekit.dashboard.access import is_loopback

    roots = runs_dirs or [Path("runs")]
    if not 0 <= port <= 65535:
        fail(f"--port {port}: give a port number from 0 to 65535")
    try:
        board = Dashboard(roots, host=host, port=port)
    except ValueError as exc:
        fail(str(exc))
    if not is_loopback(host):
        errors.print(f"[yellow]warning:[/] listening on {host}: anyone who can reach this "
                     "machine and has the token can launch runs", highlight=False)
    console.print(f"prunekit dashboard: {board.url}", highlight=False, soft_wrap=True)
    signal.signal(signal.SIGTERM, _stop)  # a `kill` stops it as Ctrl-C does: jobs cancelled
    try:
        board.serve_forever()
    except KeyboardInterrupt:
        console.print("dashboard stopped; the runs it launched were cancelled")


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
