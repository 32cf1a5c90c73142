"""Simulated clocks per second of the default bundle's layer engine (8x8), three ways, on the same
stimulus (every layer of the first ``--images`` test images, each layer fed the golden
model's codes, no stalls):

* ``co-simulation``: ``sim.network_sim.NetworkSim`` (the harness's memories loaded in bulk,
  the whole network in one cocotb run, the clock toggled by the harness itself); its wall
  time, the simulator's start, the packing of the stimulus and the reading back included;
* ``per-clock cocotb``: the layer engine alone, driven by ``sim.benches.stream_bench`` (Python
  acts on every clock); wall time of the cocotb runs;
* ``plain Verilator``: the same harness Verilog under a C++ main (``bench/plain_main.cpp``)
  that loads the memories through VPI and toggles the clock itself; time of its clock loop.

All three must give the golden model's outputs; the table shows clocks, seconds, clocks per
second and the ratio to the plain harness, each the fastest of ``--repeat`` runs interleaved
with the others' (and the co-simulation's clocks alone: its fastest time from ``go`` to
``done``). Every run of the plain harness has a clock budget from the cycle model
(``gen.cycles``): a run that exceeds it stops the bench with the harness's message.

    ./dev python bench/cosim_speed.py [--images 30] [--repeat 3] [--ways plain,cosim]
        [--rows 8] [--cols 8]
"""

import argparse
import fcntl
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.bundle import load                                          # noqa: E402
from gen.cycles import layer_cycles, layer_shape                     # noqa: E402
from core.rescale import BETA_ONE                                     # noqa: E402
from core.sizing import config_for_bundle                             # noqa: E402
from hw.accelerator import Accelerator                               # noqa: E402
from hw.rescale_unit import output_layout, param_layout              # noqa: E402
from sim import verilator                                            # noqa: E402
from sim.cosim import SPEED_ARGS, SPEED_MAKE, TOP, thresholds       # noqa: E402
from sim.design import Design                                        # noqa: E402
from sim.engine_sim import PassWords, passes_for                     # noqa: E402
from sim.payload import Payload, unpack                              # noqa: E402
from sim.golden import im2col, run_network                           # noqa: E402
from sim.harness import COUNTS, STREAMS                              # noqa: E402
from sim.network_sim import NetworkSim, layer_params                 # noqa: E402
from sim.rescale_sim import output_order                             # noqa: E402


def layer_inputs(bundle, codes, golden):
    """Per layer: the samples' ``A`` rows and the ``beta_in`` of each sample (golden)."""
    ins, betas = codes, np.full(len(codes), BETA_ONE, dtype=np.int64)
    for i, layer in enumerate(bundle.layers):
        if layer.kind == "linear":
            rows = [x.reshape(1, -1) for x in ins]
        else:
            rows = list(im2col(ins, layer.kernel, layer.stride, layer.padding)
                        .reshape(len(ins), -1, layer.product_k))
        yield layer, rows, betas
        if i < len(bundle.layers) - 1:
            ins, betas = golden.layers[i].codes, golden.layers[i].beta


def expected(golden, i, n):
    last = i == len(golden.layers) - 1
    return (golden.logits if last else golden.layers[i].codes).reshape(n, -1)


def run_cosim(net, bundle, codes, golden):
    """``(clocks, wall seconds, the bench's seconds)`` of the whole network in one cocotb run."""
    t0 = time.monotonic()
    run = net.run(bundle, codes, name="speed")
    seconds = time.monotonic() - t0
    for i, layer in enumerate(bundle.layers):
        assert (run.outputs[i].reshape(len(codes), -1) == expected(golden, i, len(codes))).all()
    return run.clocks, seconds, dict(run.seconds, wall=seconds)


def run_per_clock(cfg, root, net, bundle, codes, golden):
    design = Design(Accelerator(config=cfg), root, "asq_accel")
    plan = net._cosim.plan
    param = Payload(param_layout(cfg.index_bits))
    out = Payload(output_layout(cfg.cols))
    words = PassWords(cfg)
    clocks, seconds = 0, 0.0
    for i, (layer, rows, betas) in enumerate(layer_inputs(bundle, codes, golden)):
        channels, positions = layer.out_shape[0], int(np.prod(layer.out_shape[1:]))
        size = cfg.batch_for(layer.positions)
        steps = []
        for s0 in range(0, len(rows), size):
            batch = rows[s0:s0 + size]
            passes = passes_for(cfg, np.concatenate(batch), layer.weight_matrix,
                                layer.w_format, layer.w_bits)
            steps.append({
                "first": {"i_param": [param.pack({"addr": a, "value": v, "last": x})
                                      for a, v, x in layer_params(layer, cfg)]},
                "send": {"i_beta": [int(b) for b in betas[s0:s0 + size]],
                         **words.streams(passes)},
                "receive": {"o_out": len(batch) * plan.out_words(channels, positions)}})
        t0 = time.monotonic()
        results = design.run_streams(steps, sources=("i_param", "i_beta", "i_w", "i_a",
                                                     "i_pass"),
                                     sinks=("o_out",), name=f"layer{i}")
        seconds += time.monotonic() - t0
        vectors = np.concatenate([[out.unpack(w)["value"] for w in r["o_out"]]
                                  for r, _ in results])
        per = plan.out_words(channels, positions)
        got = np.stack([output_order(vectors[n * per:(n + 1) * per], channels, positions,
                                     cfg.cols) for n in range(len(rows))])
        assert (got == expected(golden, i, len(codes))).all(), layer.name
        clocks += sum(c for _, c in results)
    return clocks, seconds


def run_fields():
    """The fields of a plain harness run line, in order: ``sim.harness.COUNTS`` (the run's
    shape) and the settings of ``sim.cosim.thresholds`` (every one a port of the harness)."""
    return (*COUNTS, *thresholds(0, 0.0, 0.0))


def run_fields_header():
    """``run_fields.h`` of ``plain_main.cpp``: its field list, generated from ``run_fields()``
    so that a field added to ``COUNTS`` is a field of the C++ harness too."""
    fields = " ".join(f"X({name})" for name in run_fields())
    streams = ", ".join(f'"{s}"' for s in STREAMS)
    return (f"// Generated by bench/cosim_speed.py (run_fields_header): do not edit.\n"
            f"#define RUN_FIELDS(X) {fields}\n"
            f'#define RUN_FIELDS_SOURCE "sim.harness.COUNTS and sim.cosim.thresholds"\n'
            f"#define RUN_STREAMS {streams}\n")


def run_line(run, settings, budget):
    """The ``run`` line of one harness run for ``plain_main.cpp``: every field by name."""
    values = {**run, **settings}
    return "run " + " ".join(f"{k}={int(values[k])}" for k in run_fields()) + \
        f" budget={int(budget)}\n"


def clock_budget(expected):
    """Clocks a run may take in the plain harness before it is stopped: twice the cycle
    model's ``expected`` clocks (``gen.cycles``, within 2 % of the RTL on the suite's
    networks) and some."""
    return 2 * expected + 10_000


def build_plain(sim, root, args=SPEED_ARGS, opt_fast=SPEED_MAKE[0].split("=")[1]):
    """The harness's Verilog (``sim.verilog``) under ``plain_main.cpp``, built with Verilator
    ``args`` (the co-simulation's by default) and, if given, the C++ optimisation
    ``opt_fast``, in a folder of ``root`` named by all of these (built once; the executable's
    path)."""
    binary = verilator.use_packaged_verilator()
    header = run_fields_header()
    key = sim.verilog.read_text() + (ROOT / "bench" / "plain_main.cpp").read_text() + header
    key = hashlib.sha256((key + repr((args, opt_fast))).encode()).hexdigest()
    folder = Path(root) / f"plain-{key[:12]}"
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / "obj" / "plain"
    stamp = folder / ".stamp"
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)              # parallel runs build it once
        if exe.exists() and stamp.exists() and stamp.read_text() == key:
            return exe
        (folder / "run_fields.h").write_text(header)
        args = [a for a in args if a != "--no-public-flat-rw"]
        cmd = [str(binary), "--cc", "--exe", "--build", "-j", "2", "--vpi", "-Wno-fatal",
               "--prefix", "Vtop", "--top-module", TOP, "-Mdir", str(folder / "obj"),
               "-o", "plain", "-CFLAGS", f"-I{folder.resolve()}",
               *args, str(sim.verilog), str(sim.verilog.with_suffix(".vlt")),
               str(ROOT / "bench" / "plain_main.cpp")]
        env = dict(os.environ)
        if opt_fast:
            env["MAKEFLAGS"] = f"{env.get('MAKEFLAGS', '')} OPT_FAST={opt_fast}"
        log = folder / "build.log"
        with open(log, "w") as f:
            if subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env).returncode:
                raise SystemExit(f"the plain harness did not build; see {log}")
        stamp.write_text(key)
    return exe


def run_plain_file(exe, stim, result):
    """Run the plain harness on the stimulus file ``stim``; a failure (a run over its clock
    budget, a field missing or unknown) stops the bench with the harness's message."""
    done = subprocess.run([str(exe), str(stim), str(result)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench/plain_main.cpp on {stim} failed (status {done.returncode}): "
                         f"{done.stderr.strip()}")
    return result.read_text()


def run_plain(exe, net, bundle, codes, golden, folder):
    plan = net._cosim.plan
    cfg = plan.config
    settings = thresholds(0, 0.0, 0.0)
    clocks, seconds = 0, 0.0
    for i, (layer, rows, betas) in enumerate(layer_inputs(bundle, codes, golden)):
        channels, positions = layer.out_shape[0], int(np.prod(layer.out_shape[1:]))
        shape = layer_shape(bundle, i, cfg)
        runs = plan.layer_runs(W=layer.weight_matrix, w_format=layer.w_format,
                               w_bits=layer.w_bits, samples_rows=rows, betas=betas,
                               param_words=layer_params(layer, cfg),
                               channels=channels, out_positions=positions)
        stim = folder / f"layer{i}.txt"
        with open(stim, "w") as f:
            for run in runs:
                expected_clocks = layer_cycles(cfg, shape, run["samples"]).clocks
                f.write(run_line(run, settings, clock_budget(expected_clocks)))
                for name in ("stim_param", "stim_beta", "stim_w", "stim_pass", "stim_a"):
                    if name in run:
                        f.write(f"mem {name} {len(run[name])}\n")
                        f.write("\n".join(format(int(w), "x") for w in run[name]) + "\n")
                f.write("go\n")
        lines = run_plain_file(exe, stim, folder / f"layer{i}.out").split("\n")
        words = []
        for line in lines:
            if line.startswith("clocks"):
                _, c, _, sec = line.split()
                clocks, seconds = clocks + int(c), seconds + float(sec)
            elif line:
                words.append(int(line, 16))
        per = plan.out_words(channels, positions)
        vectors = unpack(plan.layouts["out"], words)["value"].reshape(len(rows), per, -1)
        values = np.stack([output_order(v, channels, positions, cfg.cols) for v in vectors])
        assert (values == expected(golden, i, len(rows))).all(), layer.name
    return clocks, seconds


WAYS = ("plain", "cosim", "per-clock")


def add_size_options(parser):
    """``--rows`` and ``--cols`` of the layer engine's array (8x8, the default bundle's)."""
    parser.add_argument("--rows", type=int, default=8, help="array rows (%(default)s)")
    parser.add_argument("--cols", type=int, default=8, help="array columns (%(default)s)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=30, help="(%(default)s)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="interleaved runs of each way, the fastest kept (%(default)s)")
    parser.add_argument("--ways", default=",".join(WAYS),
                        help="comma-separated, of %(default)s (per-clock takes minutes on 100 "
                             "images)")
    add_size_options(parser)
    parser.add_argument("--out", default=str(ROOT / "build" / "bench"), help="(%(default)s)")
    args = parser.parse_args()
    ways = [w for w in args.ways.split(",") if w]
    if not ways or any(w not in WAYS for w in ways) or "plain" not in ways:
        parser.error(f"--ways must name plain and some of {', '.join(WAYS[1:])}, not "
                     f"{args.ways!r}")
    if args.images < 1 or args.repeat < 1:
        parser.error("--images and --repeat must be at least 1")
    bundle = load(ROOT / "export" / "default_model" / "bundle")
    cfg = config_for_bundle(bundle, rows=args.rows, cols=args.cols)
    codes = bundle.quantize_input(bundle.reference["images"][:args.images])
    golden = run_network(bundle, codes)
    net = NetworkSim(cfg, args.out)
    exe = build_plain(net._cosim, args.out)
    run = {"plain": lambda: run_plain(exe, net, bundle, codes, golden, exe.parent.parent),
           "cosim": lambda: run_cosim(net, bundle, codes, golden),
           "per-clock": lambda: run_per_clock(cfg, args.out, net, bundle, codes, golden)}
    # Interleaved repeats, the fastest of each kept: other jobs on the machine only slow a
    # run down, so the fastest run is the best estimate of each way's own speed.
    best, clocks_alone, loads = {}, None, []
    for _ in range(args.repeat):
        for way in ways:
            loads.append(os.getloadavg()[0])
            result = run[way]()
            if way not in best or result[1] < best[way][1]:
                best[way] = result
            if way == "cosim" and (clocks_alone is None
                                   or result[2]["simulate"] < clocks_alone[1]):
                clocks_alone = (result[0], result[2]["simulate"])
    print(f"{cfg.rows}x{cfg.cols} layer engine, default bundle, {args.images} images, every "
          f"layer; fastest of {args.repeat} interleaved; {os.cpu_count()} cores, load average "
          f"{min(loads):.1f} to {max(loads):.1f}")
    rows = [("plain Verilator (C++ main)", best["plain"])]
    if "cosim" in best:
        rows += [("co-simulation (whole wall)", best["cosim"]),
                 ("co-simulation (clocks alone)", clocks_alone)]
    if "per-clock" in best:
        rows.append(("per-clock cocotb bench", best["per-clock"]))
    base = best["plain"][0] / best["plain"][1]
    print(f"  {'way':<30} {'clocks':>9} {'seconds':>8} {'clocks/s':>10} {'x plain':>8}")
    for name, (clocks, seconds, *_) in rows:
        rate = clocks / seconds
        print(f"  {name:<30} {clocks:>9} {seconds:>8.2f} {rate:>10.0f} {rate / base:>8.3f}")
    if "cosim" in best:
        t = best["cosim"][2]
        print(f"  the fastest co-simulation's {t['wall']:.2f} s: clocks {t['simulate']:.2f} s, "
              f"loading memories {t['load']:.2f} s, reading back {t['read']:.2f} s, host work "
              f"in the simulator {t['total'] - t['simulate'] - t['load'] - t['read']:.2f} s, "
              f"starting the simulator and the rest {t['wall'] - t['total']:.2f} s")


if __name__ == "__main__":
    main()
