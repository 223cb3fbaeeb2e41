"""``python -m prunekit.dashboard.launched RECIPE --out DIR``: ``prunekit run`` as a job the
dashboard launched, with Ctrl-C restored first.

A process started from a shell's background inherits SIGINT *ignored*; its run could then only
be killed, never cancelled cleanly (a cancelled run marks itself so in its store, a killed one
reads as interrupted). This module is the child's entry point and nothing imports it.
"""

from __future__ import annotations

import signal
import sys

if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from prunekit.cli import app

    app(["run", *sys.argv[1:]], prog_name="prunekit")
