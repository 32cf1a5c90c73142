"""Every verb's options, one function a verb; ``build_parser`` puts them together.

A verb's handler is named, not imported: ``asqgen.cli`` imports ``asqgen.verbs.<verb>`` only
when the verb runs, so building the parser (and ``--help``) imports neither PyTorch nor the
hardware.
"""

import argparse

from core import __version__, rules
from core.errors import UsageError

from .options import (add_array_options, add_size_options, count, default_model, folder,
                      positive, probability, shown)

__all__ = ["build_parser", "VERBS"]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line ``asqgen: error: [verb: ]...`` and status 2 (the
    usage is in ``--help``)."""

    def error(self, message):
        verb = self.prog.split(" ", 1)[1] + ": " if " " in self.prog else ""
        self.exit(UsageError.exit_status, f"asqgen: error: {verb}{message}\n")


def _out(p, default, what="output folder"):
    p.add_argument("--out", default=default, type=folder, help=f"{what} (%(default)s)")


def _json(p):
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")


def _data(p, help):
    p.add_argument("--data", choices=("digits", "fashion-mnist"), default="digits", help=help)


def _epochs(p, qat, floats):
    p.add_argument("--epochs", type=count, default=None,
                   help=f"QAT epochs (default {qat[0]} for the digits, {qat[1]} for "
                        f"fashion-mnist)")
    p.add_argument("--float-epochs", type=count, default=None,
                   help=f"float pretraining epochs (default {floats[0]} for the digits, "
                        f"{floats[1]} for fashion-mnist)")


def _cluster(p, what):
    g = p.add_argument_group("jobs (Dask distributed, the optional extra 'cluster')")
    g.add_argument("--workers", "--jobs", dest="workers", type=positive, default=2,
                   help=f"worker processes of a local Dask cluster, one thread each; every "
                        f"{what} is a job (%(default)s)")
    g.add_argument("--cluster", default=None, metavar="ADDRESS",
                   help="run the jobs on the running Dask scheduler at ADDRESS "
                        "(tcp://host:8786) instead of a local cluster")
    g.add_argument("--store", default=None, type=folder,
                   help="folder of the finished jobs' results, reused by a later run "
                        "(default: OUT/jobs)")
    g.add_argument("--quiet", action="store_true",
                   help="no progress line on standard error (it is shown on a terminal only)")


def verilog(p):
    add_array_options(p)
    p.add_argument("--bundle", default=None,
                   help="size the layer engine (array, accumulator buffer, rescale unit) for "
                        "this bundle; without it, the bare systolic array")
    _out(p, "out/verilog")


def selfcheck(p):
    add_array_options(p)
    _out(p, "out/selfcheck")
    p.add_argument("--seed", type=int, default=1, help="random seed (%(default)s)")
    p.add_argument("--stall", type=probability, default=0.3,
                   help="probability of an idle clock on each input and output (%(default)s)")


def train(p):
    _data(p, "data set (%(default)s); fashion-mnist needs Debian's dataset-fashion-mnist")
    p.add_argument("--model", choices=("cnn", "resnet8", "resnet20", "mobilenetv2"), default=None,
                   help="network: cnn (the digits' CNN), resnet8, resnet20 or mobilenetv2 "
                        "(Fashion-MNIST 14x14) (default: the data set's, resnet8 for "
                        "fashion-mnist)")
    p.add_argument("--train-images", type=positive, default=None,
                   help="fashion-mnist: train on this many of the 55,000 training images "
                        "(default all)")
    p.add_argument("--bits", type=int, choices=rules.RECIPE_BITS, default=4,
                   help="weight and activation bits of the middle layers (%(default)s)")
    p.add_argument("--weights", choices=rules.WEIGHT_METHODS, default="post",
                   help="weight method of the middle layers (%(default)s)")
    p.add_argument("--acts", choices=rules.ACT_METHODS, default="asq",
                   help="activation method of the middle layers (%(default)s)")
    _epochs(p, (15, 5), (15, 8))
    p.add_argument("--seed", type=count, default=1, help="random seed (%(default)s)")
    _out(p, "out/train")


def methods(p):
    _data(p, "data set and network: the digits' CNN or Fashion-MNIST's ResNet-8 (%(default)s)")
    p.add_argument("--bits", type=int, choices=rules.RECIPE_BITS, nargs="+", default=None,
                   help="widths to compare (default 4 3 for the digits, 4 3 2 for "
                        "fashion-mnist)")
    p.add_argument("--seeds", type=positive, default=None,
                   help="number of seeds (default 10 for the digits, 2 for fashion-mnist)")
    p.add_argument("--seed", type=count, default=1, help="first seed (%(default)s)")
    _epochs(p, (15, 3), (15, 5))
    p.add_argument("--train-images", type=positive, default=None,
                   help="fashion-mnist: training images (default 20000 of the 55,000)")
    p.add_argument("--no-plot", action="store_true",
                   help="no methods.png (which needs matplotlib: ./dev pip install -e "
                        "'.[plot]')")
    _cluster(p, "training run")
    _out(p, "out/methods")


def sweep(p):
    p.add_argument("file", help="the sweep file (JSON): its axes (bundles, arrays, "
                                "rescale_lanes, batches, boards) and stages; see docs/sweeps.md")
    p.add_argument("--no-plot", action="store_true",
                   help="no sweep.png (which needs matplotlib: ./dev pip install -e '.[plot]')")
    _cluster(p, "stage of a point (estimate, synthesis, simulation)")
    _out(p, "out/sweep")


def export(p):
    p.add_argument("--checkpoint", default=shown(default_model()),
                   help="checkpoint folder (model.npz + model.json) (%(default)s)")
    _out(p, "out/bundle", "bundle folder")


def compare(p):
    p.add_argument("--bundle", default=None,
                   help=f"bundle folder (default: the checkpoint's, or "
                        f"{shown(default_model() / 'bundle')})")
    p.add_argument("--checkpoint", default=None,
                   help="a checkpoint folder (asqgen train) to run PyTorch again; it must "
                        "be the one the bundle was exported from (default: compare with the "
                        "PyTorch outputs stored in the bundle)")
    _json(p)


def sim(p):
    p.add_argument("--bundle", default=shown(default_model() / "bundle"),
                   help="bundle folder (%(default)s)")
    p.add_argument("--images", type=positive, default=None,
                   help="reference inputs to run (default 100, or all the bundle has if fewer)")
    add_size_options(p.add_argument_group("array"))
    p.add_argument("--stall", type=probability, default=0.0,
                   help="probability of an idle clock on every input and output (%(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the stalls (%(default)s)")
    _out(p, "out/sim", "build folder")
    _json(p)
    p.add_argument("--quiet", action="store_true",
                   help="no progress line on standard error (it is shown on a terminal only)")


def _board(p, default="ulx3s-25f"):
    p.add_argument("--board", default=default,
                   help="the board: ulx3s-25f, ulx3s-45f or ulx3s-85f (%(default)s)")


def _megahertz(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value > 0 and value < 1000):
        raise argparse.ArgumentTypeError(f"must be a frequency in MHz above 0, not {text}")
    return value


def estimate(p):
    p.add_argument("--bundle", default=shown(default_model() / "bundle"),
                   help="bundle folder (%(default)s)")
    add_size_options(p.add_argument_group("array (without --rows and --cols: the "
                                          "configuration with the most images/s that fits "
                                          "the board)"))
    _board(p)
    p.add_argument("--clock", type=_megahertz, default=100.0,
                   help="the engine's clock in MHz (%(default)g)")
    p.add_argument("--baud", type=positive, default=115_200,
                   help="the host link's UART speed in bits per second (%(default)s)")
    _json(p)


def synth(p):
    p.add_argument("design", nargs="?", choices=("pe", "array", "matmul", "rescale", "engine",
                                                 "bridge"), default="engine",
                   help="what to synthesise: a PE, the array, the matmul engine, the rescale "
                        "unit, the layer engine or the engine behind its host bridge "
                        "(%(default)s)")
    p.add_argument("--bundle", default=None,
                   help="size the design for this bundle (default: the default model's for the "
                        "engine and its parts, the array options for a PE or an array)")
    add_array_options(p)
    _board(p)
    p.add_argument("--pnr", action="store_true",
                   help="also place and route it out of context (nextpnr-ecp5) for its Fmax")
    p.add_argument("--clock", type=_megahertz, default=100.0,
                   help="place and route: the target clock in MHz (%(default)g)")
    p.add_argument("--estimate", action="store_true",
                   help="print asqgen estimate's figures beside the real ones (an engine)")
    _out(p, "build/synth", "cache folder")
    _json(p)


def board(p):
    p.add_argument("--bundle", default=shown(default_model() / "bundle"),
                   help="size the engine for this bundle (%(default)s)")
    add_size_options(p.add_argument_group("array"))
    _board(p)
    p.add_argument("--clock", type=_megahertz, default=100.0,
                   help="the engine's clock in MHz, made by the ECP5 PLL from the board's "
                        "25 MHz (%(default)g)")
    p.add_argument("--baud", type=positive, default=115_200,
                   help="the host link's UART speed (%(default)s)")
    p.add_argument("--seeds", default="1,2,3,4",
                   help="nextpnr's placement seeds to try in turn until timing closes "
                        "(%(default)s)")
    p.add_argument("--all-seeds", action="store_true",
                   help="try every seed, not only until one closes")
    p.add_argument("--seed-timeout", type=positive, default=2400,
                   help="seconds for one seed's build; a router that has not finished by then "
                        "is stopped and the next seed tried (%(default)s)")
    _out(p, "build/board", "build folder")
    _json(p)


def export_onnx(p):
    p.add_argument("--bundle", default=shown(default_model() / "bundle"),
                   help="bundle folder (%(default)s)")
    p.add_argument("--out", default="out/model.onnx", type=folder,
                   help="the QONNX file to write (%(default)s)")
    p.add_argument("--compat", action="store_true",
                   help="what FINN and hls4ml keep after qonnx's cleanup: POST/POT weights as "
                        "float initializers and each ASQ step fixed at its mean beta over the "
                        "reference inputs (default: the codes and the adapters)")
    p.add_argument("--images", type=count, default=None,
                   help="measure the agreement on this many reference inputs (default all; 0: "
                        "no measurement)")
    _json(p)


def import_(p):
    p.add_argument("model", help="the QONNX file (.onnx; its external data file, if any, "
                                 "beside it)")
    p.add_argument("--out", required=True, type=folder, help="bundle folder to write")
    p.add_argument("--inputs", required=True,
                   help="test inputs (.npy, (N,) + the model's input shape, non-negative): "
                        "qonnx runs them for the bundle's reference outputs")
    p.add_argument("--labels", default=None,
                   help="their classes (.npy, N integers), for accuracies")


# verb: (its options, its one-line help)
VERBS = {
    "verilog": (verilog, "generate the Verilog and the manifest of an array, or of the layer "
                         "engine for a bundle"),
    "selfcheck": (selfcheck, "generate an array, run random products through it on Verilator "
                             "and compare them with the golden model"),
    "train": (train, "quantization-aware training of the digits network (or of a ResNet-8, "
                     "ResNet-20 or MobileNet-V2 on Fashion-MNIST); writes a checkpoint (model.npz "
                     "+ model.json) and its bundle"),
    "methods": (methods, "compare float, LSQ, LSQ+POT, LSQ+POST, ASQ and ASQ+POST on the digits "
                         "(or a ResNet-8 on Fashion-MNIST) over several seeds"),
    "sweep": (sweep, "a design-space sweep (bundles, array sizes, rescale lanes, batches, "
                     "boards): the estimate of every point, optionally synthesis and sim, as "
                     "jobs on Dask; a table and a Pareto plot"),
    "export": (export, "write the bundle of a trained checkpoint"),
    "compare": (compare, "the golden model against PyTorch's fake-quantized model on the "
                         "bundle's reference inputs, layer by layer"),
    "export-onnx": (export_onnx, "write a bundle as QONNX (ONNX with Quant nodes) and say how "
                                 "close its execution comes to the bundle"),
    "import": (import_, "a QONNX model (from Brevitas) into a bundle, with qonnx's own "
                        "execution of it on the given inputs as the reference"),
    "sim": (sim, "run a bundle on the generated hardware in Verilator and compare every layer "
                 "with the golden model and PyTorch"),
    "estimate": (estimate, "a bundle's cycles, images/s and the engine's resources on a board, "
                           "in a second and without Yosys; without --rows/--cols the fastest "
                           "configuration that fits"),
    "synth": (synth, "synthesise a PE, an array or the engine with Yosys (the extra 'synth') "
                     "for the board's ECP5: its cells, and with --pnr its Fmax"),
    "board": (board, "the engine behind its UART bridge on an ULX3S: bitstream, resources, Fmax, "
                     "trying placement seeds until timing closes"),
}


def build_parser(description, epilog):
    parser = _Parser(prog="asqgen", description=description, epilog=epilog,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"asqgen {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error (also after the subcommand)")
    debug = _Parser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for verb, (options, help) in VERBS.items():
        options(sub.add_parser(verb, help=help, parents=[debug]))
    return parser
