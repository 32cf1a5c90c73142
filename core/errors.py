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
``ModelError``              4       a model file (QONNX) that cannot be read or
                                    mapped onto the accelerator
``ToolError``               5       a tool (Verilator, a compiler) missing or failing
``BuildError``              5       Verilator or the C++ compiler failed (a ``ToolError``)
``DataError``               5       a data set missing or corrupt (a ``ToolError``:
                                    something to install, as a tool is)
``OutputError``             6       an output file or folder that cannot be written
``RtlError``                1       a verdict, not a fault of the user's: the RTL
                                    differs from the golden model, or fails a check of
                                    the bench (a watchdog caught a hang)
(Ctrl-C)                    130     interrupted
==========================  ======  ==============================================
"""

__all__ = ["AsqgenError", "UsageError", "BundleError", "CheckpointError", "ModelError",
           "ToolError", "BuildError", "DataError", "OutputError", "RtlError", "INTERRUPTED"]

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


class ModelError(AsqgenError, ValueError):
    """A model file from another tool (QONNX, ``asqgen import``) that cannot be used: not
    ONNX, truncated, an external data file missing, or an op, quantizer or scale that asqgen
    cannot map; the message names the file and the node (status 4, a trained model that cannot
    be used, as a checkpoint)."""

    exit_status = 4


class ToolError(AsqgenError, RuntimeError):
    """An external tool that is missing or failed; the message names its log."""

    exit_status = 5


class BuildError(ToolError):
    """Verilator or the C++ compiler failed; the message names the log to read."""


class DataError(ToolError, ValueError):
    """A data file that is missing, corrupt or not what it should be; the message names the
    file and says what to install."""


class OutputError(AsqgenError, OSError):
    """An output that cannot be written (a file in the way, no permission, a full disk)."""

    exit_status = 6


class RtlError(AsqgenError, RuntimeError):
    """The simulation ran and a check of the bench failed (a watchdog caught a hung design, a
    flag was wrong): the RTL's fault, so the command line's verdict status 1."""

    exit_status = 1
