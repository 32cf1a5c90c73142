"""``asqgen``, the command line: ``cli`` (the entry point, errors and exit statuses), ``parser``
(every verb's options), ``options`` (the options' types and the array configuration they give),
and one module a verb in ``verbs``, imported only when that verb runs (so that ``--help`` and
the verbs without PyTorch never import it). It is the top floor: it may import every other
package, and none imports it (docs/layout.md)."""

from core import __version__

__all__ = ["__version__"]
