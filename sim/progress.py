"""A one-line progress display for long co-simulations, on a terminal only.

``ProgressLine.for_stream(stream)`` returns ``None`` when ``stream`` is not a terminal (a pipe
or a file gets no carriage returns); otherwise a callable that takes the bench's progress
reports (``sim.benches.cosim_bench``: ``layer``, ``layers``, ``steps_done``, ``steps``,
``clocks``, ``seconds``) and rewrites one line: the layer, the images done in it, simulated
clocks per second and the time left; ``close()`` clears the line.
"""

import time

__all__ = ["ProgressLine", "format_progress"]


def format_progress(state, elapsed, names=None):
    """The text of one report. Rates and the time left count from the simulator's start
    (``state["seconds"]``) when the report has it, else ``elapsed`` seconds (from the
    display's creation)."""
    elapsed = state.get("seconds", elapsed)
    layers, steps = state["layers"], state["steps"]
    per_layer = max(1, steps // max(1, layers))
    layer = state["layer"]
    images = state["steps_done"] - layer * per_layer
    name = f"{names[layer]} " if names else ""
    rate = state["clocks"] / elapsed if elapsed > 0 else 0.0
    done = state["steps_done"] / steps if steps else 1.0
    left = elapsed * (1 - done) / done if done > 0 else float("nan")
    return (f"  layer {name}({layer + 1}/{layers}), image {images}/{per_layer}, "
            f"{rate:,.0f} clocks/s, about {left:.0f} s left")


class ProgressLine:
    def __init__(self, stream, names=None):
        self._stream, self._names = stream, names
        self._start = time.monotonic()
        self._width = 0

    @classmethod
    def for_stream(cls, stream, names=None):
        isatty = getattr(stream, "isatty", None)
        return cls(stream, names) if isatty and isatty() else None

    def __call__(self, state):
        text = format_progress(state, time.monotonic() - self._start, self._names)
        self._stream.write("\r" + text.ljust(self._width))
        self._stream.flush()
        self._width = len(text)

    def close(self):
        if self._width:
            self._stream.write("\r" + " " * self._width + "\r")
            self._stream.flush()
            self._width = 0
