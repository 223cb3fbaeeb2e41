"""``python -m prunekit`` is the ``prunekit`` command (``torchrun -m prunekit run ...`` needs it)."""

from prunekit.cli import app

app(prog_name="prunekit")
