"""Budget-driven compression: one call that takes a budget and a quality bound.

:mod:`.budget` says what a budget is and how it is estimated and measured, :mod:`.search` how
many units each group keeps (a sensitivity-guided greedy walk), :mod:`.run` the iterative
prune-and-recover path and its verdict, :mod:`.session` how each step fine-tunes, probes,
prunes and measures.
"""

from prunekit.compress.budget import BUDGETS, Budget
from prunekit.compress.run import CompressResult, Settings, compress

__all__ = ["BUDGETS", "Budget", "CompressResult", "Settings", "compress"]
