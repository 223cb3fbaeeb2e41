"""The interactive dashboard: ``prunekit dashboard RUNS_DIR`` (see docs/dashboard.md).

:mod:`.server` answers HTTP behind the guards of :mod:`.access`; :mod:`.api` holds the routes;
:mod:`.workspace` finds the runs; :mod:`.subject`, :mod:`.whatif`, :mod:`.export_choice` and
:mod:`.structure` load a variant, prune a copy of it, keep the result and draw its groups;
:mod:`.jobs` launches recipes. The page itself is ``static/``.
"""

from prunekit.dashboard.server import Dashboard

__all__ = ["Dashboard"]
