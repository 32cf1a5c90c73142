"""The shared definitions that every other folder imports: numbers and formats
(``numerics``), the array configuration (``config``), the rescale contract (``rescale``), the
register map (``regmap``), the bundle format (``bundle``), the rules a model must follow
(``rules``), the adapter record (``adapter``), signed-digit terms (``signed_digits``), sizing
an engine for a bundle (``sizing``), files (``files``) and the errors a user can cause
(``errors``). It imports nothing else of asqgen's (docs/layout.md)."""

__version__ = "0.1.0"
