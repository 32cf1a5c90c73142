"""``asqgen``: the command line, one subcommand per step of the flow.

Every error a user can cause ends with one line ``asqgen: error: ...`` on standard error and an
exit status that tells its class (``core.errors``); never a traceback, unless ``--debug`` is
given (then the traceback, the line and the same status). Any other exception is a bug in
asqgen and shows its traceback.

Exit statuses:
  0    success (for ``selfcheck`` and ``sim``: the RTL equals the golden model)
  1    the RTL differs from the golden model (or a bench's check caught it: a hang, a flag)
  2    a bad option or combination of options (usage)
  3    a bad bundle (missing, unreadable, or failing a check of ``core.bundle``)
  4    a bad checkpoint (``export.train.load_checkpoint``), or a bundle from another one;
       a QONNX model that cannot be read or mapped (``asqgen import``)
  5    a tool missing or failing (Verilator, the C++ compiler), or a data set missing
  6    an output that cannot be written
  130  interrupted (Ctrl-C)
"""

import importlib
import sys

from core.errors import INTERRUPTED, AsqgenError

__all__ = ["main", "build_parser", "script", "VERB_MODULES"]

# A verb whose name is not a module name (a Python keyword, a hyphen): its module in
# ``asqgen.verbs``.
VERB_MODULES = {"import": "import_onnx", "export-onnx": "export_onnx"}


def build_parser():
    """The whole parser: every verb with its options (``asqgen.parser``, imported here, inside
    ``main``'s handlers, so that a Ctrl-C while it loads is one line too)."""
    from .parser import build_parser as build

    return build(__doc__.split("\n")[0], __doc__[__doc__.index("Exit statuses:"):])


def _fail(message, status, debug):
    if debug:
        import traceback

        traceback.print_exc()
    print(f"asqgen: {message}", file=sys.stderr)
    return status


def main(argv=None):
    """Run ``asqgen`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    import warnings

    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        # Warnings (numpy's RuntimeWarnings) are held back: an error is one line, and a
        # successful run shows them at its end.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            args = build_parser().parse_args(argv)
            debug = args.debug
            module = VERB_MODULES.get(args.command, args.command)
            verb = importlib.import_module(f"asqgen.verbs.{module}")
            status = verb.run(args)
        for w in caught:
            print(f"asqgen: warning: {w.message}", file=sys.stderr)
        return status
    except AsqgenError as e:
        return _fail("error: " + " ".join(str(e).split("\n")), e.exit_status, debug)
    except KeyboardInterrupt:
        return _fail("interrupted", INTERRUPTED, debug)


def script():
    """The ``asqgen`` console script: ``main``, and a Ctrl-C at any moment one line and 130."""
    try:
        status = main()
    except KeyboardInterrupt:            # between main's own handlers, or at interpreter exit
        print("asqgen: interrupted", file=sys.stderr)
        status = INTERRUPTED
    sys.stdout.flush()
    sys.exit(status)


if __name__ == "__main__":
    script()
