"""The errors that a user can cause, one class per kind, each with the CLI's exit status.

``asqgen`` turns exactly these into one line ``asqgen: error: ...`` and their ``exit_status``;
any other exception is a bug and shows its traceback. Each class also derives from the builtin
that older callers caught (``ValueError``, ``RuntimeError``), so ``except ValueError`` keeps
working.

==========================  ======  ==============================================
class                       status  meaning
==========================  ======  ==============================================
``UsageError``              2       a bad option or combination of options
``BundleError``             3       a bundle that cannot be used
``CheckpointError``         4       a checkpoint that cannot be used
``ToolError``               5       a tool (Verilator, a compiler) missing or failing
``OutputError``             6       an output file or folder that cannot be written
(a verdict)                 1       the RTL differs from the golden model, or fails a
                                    check of the bench (``sim.verilator.RtlError``)
(Ctrl-C)                    130     interrupted
==========================  ======  ==============================================
"""

__all__ = ["AsqgenError", "UsageError", "BundleError", "CheckpointError", "ToolError",
           "OutputError", "INTERRUPTED"]

INTERRUPTED = 130


class AsqgenError(Exception):
    """The base of every error a user can cause; ``exit_status`` is the CLI's status."""

    exit_status = 2


class UsageError(AsqgenError, ValueError):
    """A bad option, or options that do not fit together."""

    exit_status = 2


class BundleError(AsqgenError, ValueError):
    """A bundle that cannot be used; the message names the problem in one line."""

    exit_status = 3


class CheckpointError(AsqgenError, ValueError):
    """A training checkpoint that cannot be used; the message names the file and field."""

    exit_status = 4


class ToolError(AsqgenError, RuntimeError):
    """An external tool that is missing or failed; the message names its log."""

    exit_status = 5


class OutputError(AsqgenError, OSError):
    """An output that cannot be written (a file in the way, no permission, a full disk)."""

    exit_status = 6
