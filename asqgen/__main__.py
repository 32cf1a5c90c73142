"""``python -m asqgen``: the same as the ``asqgen`` console script."""

from .cli import script

script()
