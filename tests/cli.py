"""Running ``asqgen`` as a user does: a separate process, its exit status and its output."""

import subprocess
import sys


def asqgen(*args, cwd=None):
    """``python -m asqgen ARGS``; returns the ``CompletedProcess`` (text output)."""
    return subprocess.run([sys.executable, "-m", "asqgen", *args], capture_output=True,
                          text=True, cwd=cwd)
