"""The engine's resources on an ECP5 without running a tool: a model of per-component terms,
calibrated from real Yosys runs (``bench/calibrate.py`` writes the table, ``gen/calibration.json``,
package data).

The engine (``hw.accelerator``) is modelled as the sum of

* the **processing elements**: each PE's cells as synthesised alone (``pe`` runs, the grid of
  formats, weight bits and activation bits 2, 4 and 8; linear between them), ``rows x cols``
  of them;
* the **array's and the accumulator buffer's** own terms (``MATMUL_FEATURES``): the growth of
  the partial sums down the columns (bits beyond a PE's own), the ``post`` tables (one ROM of
  ``2**a_bits`` entries a row) and their registers, the array's result queue and skid buffer
  (``cols x acc_bits``), the accumulator buffer's adders (``cols x buffer_bits``), its block
  RAM (``memory_cells``: block RAM, or distributed RAM for a shallow one); the skew registers
  and input registers were tried as terms and fitted to nothing (Yosys merges them);
* the **rescale unit** (``RESCALE_FEATURES``): a part that does not change with the lanes, a
  term per lane and one per lane and bit of its values (``lane_bits``: ``core.widths``'
  ``value``, 64 for a unit that runs any bundle), one per value bit of a vector (``values``:
  ``cols x value``), a term per lane with the residual add (a second ``Affine``), the bank's
  read vector (``cols x buffer_bits``), and its memories as ``synth_ecp5`` maps them
  (``rescale_memories``: the small ones in block RAM however small, ``block_cells``). Its DSP
  blocks are counted, not fitted (``rescale_dsp``: each ``Product``'s 18 x 18 partial products
  at the lane's widths, as ``asqgen verilog``'s manifest reports them);
* the **glue** of the whole engine (its cycle counters and local resets) and, on a board, the
  **host bridge** (``bridge``: UART, FIFO, a skid buffer a stream).

The coefficients of each term are fitted by least squares with no negative coefficient
(``fit``) to the ``matmul`` and ``rescale`` runs of the table, one resource at a time;
``bench/estimate_check.py`` compares the model with runs it was not fitted to.

Cells are Yosys's (``synth_ecp5``): ``lut4``, ``ccu2c`` (carry cells: two LUT4 each),
``ff``, ``ebr`` (``DP16KD``), ``dpram`` (``TRELLIS_DPR16X4``: distributed RAM), ``dsp``
(``MULT18X18D``); ``logic`` is LUT4 + 2 per CCU2C. Whether a design fits a part is judged on
what nextpnr counts: its ``TRELLIS_COMB`` (logic, and ``COMB_PER_DPRAM`` a distributed RAM,
measured on the board build: 18,327 COMB for 15,971 logic and 289 DPR16X4) against
``FILL`` of the part's LUTs (on the 25F a 74 % full array placed and an 86 % one did not,
``docs/results.md``), flip-flops, block RAM and DSP blocks against the part's totals.
"""

import functools
import importlib.resources
import json
import math

import numpy as np

__all__ = ["RESOURCES", "MATMUL_FEATURES", "RESCALE_FEATURES", "load_table", "pe_cells",
           "matmul_features", "rescale_features", "estimate_part", "estimate_resources",
           "fit", "FILL", "COMB_PER_DPRAM"]

RESOURCES = ("lut4", "ccu2c", "ff", "ebr", "dpram", "dsp")
FILL = 0.80
COMB_PER_DPRAM = 8
PE_ACT_BITS = (2, 4, 8)

# Which features each resource's fit may use: the few that fit the calibration runs best (the
# others, tried, only fit noise; Yosys merges the skew registers and input registers into
# the PEs' own, so those terms came out at zero).
MATMUL_FEATURES = {
    "lut4": ("pe", "table", "treg", "colacc"),
    "ccu2c": ("pe", "psum", "colout", "colacc"),
    "ff": ("pe", "psum", "colout"),
    "ebr": ("one", "ebr_guess"),
    "dpram": ("one", "colout", "dpram_guess"),
    "dsp": ("pe",),
}
RESCALE_FEATURES = {
    "lut4": ("one", "lanes", "lane_bits", "res_lanes", "vector", "values"),
    "ccu2c": ("one", "lanes", "lane_bits", "res_lanes", "values"),
    "ff": ("one", "lanes", "lane_bits", "res_lanes", "vector", "values"),
    "ebr": ("one", "mem_ebr"),
    "dpram": ("one", "lanes", "vector"),
    "dsp": ("counted",),
}


@functools.lru_cache(maxsize=1)
def _packaged():
    return json.loads((importlib.resources.files("gen") / "calibration.json").read_text())


def load_table(table=None):
    """The calibration table: ``table`` itself (a dictionary), or the packaged one."""
    return _packaged() if table is None else table


def _config(d):
    from core.config import ArrayConfig
    return ArrayConfig(**d)


# The processing elements -------------------------------------------------------------------
def pe_key(w_format, w_bits, a_bits):
    return f"{w_format}{w_bits} a{a_bits}"


def pe_cells(table, w_format, w_bits, a_bits):
    """A PE's cells ``{resource: n}`` from the table's ``pe`` grid, linear in the activation
    bits between the grid's points."""
    grid = table["pe"]
    if pe_key(w_format, w_bits, a_bits) in grid:
        return grid[pe_key(w_format, w_bits, a_bits)]
    lo = max(a for a in PE_ACT_BITS if a <= a_bits)
    hi = min(a for a in PE_ACT_BITS if a >= a_bits)
    p, q = grid[pe_key(w_format, w_bits, lo)], grid[pe_key(w_format, w_bits, hi)]
    x = (a_bits - lo) / (hi - lo)
    return {r: p[r] + x * (q[r] - p[r]) for r in RESOURCES}


def _pe_psum_bits(config):
    """The partial sum's width of the PE that the grid synthesised (row 0 of a one-row array
    with the format's default ``frac_bits``)."""
    return _psum0(config.w_format, config.w_bits, config.a_bits, config.signed_acts)


@functools.lru_cache(maxsize=None)
def _psum0(w_format, w_bits, a_bits, signed_acts):
    from core.config import ArrayConfig
    return ArrayConfig(rows=1, cols=1, w_format=w_format, w_bits=w_bits, a_bits=a_bits,
                       signed_acts=signed_acts).psum_bits(0)


# The features ------------------------------------------------------------------------------
def memory_cells(width, depth, reads=1):
    """``(ebr, dpram)``: how ``synth_ecp5`` maps a memory of ``width`` bits by ``depth`` with
    ``reads`` read ports (one copy a read port): to ``DP16KD`` blocks (36 bits by 512, 18 by
    1,024, 9 by 2,048, ..., the mode that takes fewest; a deep memory is split in depth) or to
    ``TRELLIS_DPR16X4`` distributed RAM (16 by 4 bits), whichever
    is cheaper when a block costs ``EBR_COST`` distributed RAMs (the calibration runs put the
    ratio between 20 and 27: a 17-bit by 64 memory went to distributed RAM, an 80-bit by 64
    one to block RAM)."""
    dpram = math.ceil(width / 4) * math.ceil(depth / 16)
    ebr = min(math.ceil(width / bits) * math.ceil(depth / entries) for bits, entries in
              ((36, 512), (18, 1024), (9, 2048), (4, 4096), (2, 8192), (1, 16384)))
    return (0, reads * dpram) if dpram < EBR_COST * ebr else (reads * ebr, 0)


EBR_COST = 24


def _table_bits(config):
    fmt = config.product_format
    return max(fmt.table).bit_length() if fmt.table else 0


def matmul_features(config, table):
    """``{resource: {feature: value}}`` of the matmul engine of ``config``."""
    rows, cols = config.rows, config.cols
    op_bits = config.a_bits + (1 if config.signed_acts else 0)
    t = _table_bits(config)
    op = op_bits + t
    pe = pe_cells(table, config.w_format, config.w_bits, config.a_bits)
    own = _pe_psum_bits(config)
    psum = sum(cols * (config.psum_bits(r) - own) for r in range(rows))
    depth = 2 << (max(config.max_m, 2) - 1).bit_length()      # both banks, hw.accumulator
    ebr, dpram = memory_cells(cols * config.buffer_bits, depth, reads=2)
    queue = cols * config.acc_bits * (2 if config.split else 1) + 1   # the array's results,
    ebr += block_cells(queue, rows + cols + 8)[0]                       # hw.block_fifo
    common = {
        "one": 1.0,
        "psum": psum,
        "table": rows * t * 2 ** config.a_bits / 16 if t else 0.0,
        "treg": rows * t,
        "skew": rows * (rows - 1) / 2 * op + cols * (cols - 1) / 2 * config.acc_bits,
        "rowin": rows * op + cols * config.w_bits,
        "colout": cols * config.buffer_bits,
        "colacc": cols * config.acc_bits,
        "cols": cols,
        "ebr_guess": ebr,
        "dpram_guess": dpram,
    }
    return {r: {**common, "pe": rows * cols * pe[r]} for r in RESOURCES}


def block_cells(width, depth, reads=1):
    """``(ebr, 0)``: a memory marked ``ram_style = "block"`` (``hw.rescale_layouts.
    memory_ports(block=True)``, ``hw.block_fifo``), in ``DP16KD`` blocks however small."""
    return reads * min(math.ceil(width / bits) * math.ceil(depth / entries) for bits, entries
                       in ((36, 512), (18, 1024), (9, 2048), (4, 4096), (2, 8192), (1, 16384))), 0


def rescale_memories(config):
    """``(ebr, dpram)`` of the rescale unit's memories as ``synth_ecp5`` maps them
    (``hw.rescale_unit``): the sums ``u`` and ``S`` (a slice of ``lanes`` values of the
    widths' ``value`` bits an entry; ``memory_cells``), and in block RAM however small
    (``block_cells``) the per-channel parameters (a memory a lane and region), the adapter's
    weights and hidden units, the samples' ``beta_in`` and the output queue of vectors."""
    from core import regmap
    from core.rescale import BETA_MAX

    w = config.widths
    blocks = -(-config.max_channels // config.cols)
    steps = config.cols // config.rescale_lanes
    value = w.value * config.rescale_lanes
    mems = [memory_cells(value, max(2, blocks * config.max_m * steps)),
            memory_cells(value, max(2, blocks * config.max_batch * steps))]
    lane = ["m", "sh", "bias"] + (["res_m", "res_sh"] if config.residual else [])
    bits = lambda name: regmap.FIELD_BITS.get(name, regmap.VALUE_BITS)
    block = [(bits(r), max(2, blocks * steps)) for r in lane] * config.rescale_lanes
    c, h = config.max_channels, config.max_hidden
    block += [(bits("w1"), max(2, c * h)), (bits("b1"), max(2, h)), (bits("wb"), max(2, c, h)),
              (w.value, max(2, h)),                                  # the hidden units
              ((1 + config.residual) * BETA_MAX.bit_length(),          # beta_in (and the
               max(2, config.max_batch)),                               # shortcut's beta)
              (config.cols * w.value + 1, 2)]                        # the output queue
    cells = mems + [block_cells(wd, d) for wd, d in block]
    return sum(e for e, _ in cells), sum(d for _, d in cells)


def rescale_lane_bits(config):
    """The width that a lane's datapath scales with: its values' (``core.widths``: 64 bits for a
    unit that runs any bundle, 33 for the default bundle). (Tried on the calibration runs: the
    affine product's width added to it fitted worse, and worse still on the 8-lane unit left
    out of the fit.)"""
    return config.widths.value


def rescale_dsp(config):
    """The rescale unit's DSP blocks, counted: its lanes' (``gen.verilog.rescale_dsp_blocks``,
    each ``Product``'s 18 x 18 partial products at the lane's widths, ``hw.rescale_stages``;
    the adapter borrows lane 0's requantizer product)."""
    from gen.verilog import rescale_dsp_blocks
    return rescale_dsp_blocks(config)["total"]


def rescale_features(config, table=None):
    """``{resource: {feature: value}}`` of the rescale unit of ``config``."""
    ebr, dpram = rescale_memories(config)
    common = {
        "one": 1.0,
        "lanes": config.rescale_lanes,
        "lane_bits": config.rescale_lanes * rescale_lane_bits(config),
        "values": config.cols * config.widths.value,
        "res_lanes": config.rescale_lanes if config.residual else 0,
        "vector": config.cols * config.buffer_bits,
        "mem_ebr": ebr,
        "mem_dpram": dpram,
        "regfile": config.max_channels * (config.max_hidden + 8) / 64,
        "counted": rescale_dsp(config),
    }
    return {r: dict(common) for r in RESOURCES}


PARTS = {"matmul": (matmul_features, MATMUL_FEATURES),
         "rescale": (rescale_features, RESCALE_FEATURES)}


def estimate_part(part, config, table=None):
    """``{resource: cells}`` of ``part`` (``"matmul"`` or ``"rescale"``) of ``config``."""
    table = load_table(table)
    features, use = PARTS[part]
    values = features(config, table)
    out = {}
    for r in RESOURCES:
        coef = table["coefficients"][part][r]
        out[r] = sum(coef.get(f, 0.0) * values[r][f] for f in use[r])
    return out


def estimate_resources(config, board, *, table=None, bridge=True):
    """The engine of ``config`` on ``board`` (``gen.boards.Board``), with the host bridge
    unless ``bridge`` is false: ``{resource: cells, "logic", "comb", "parts": {...},
    "utilisation": {...}, "fits", "why", "fmax_class"}``."""
    table = load_table(table)
    parts = {"matmul": estimate_part("matmul", config, table),
             "rescale": estimate_part("rescale", config, table),
             "glue": dict(table["glue"]["engine"])}
    if bridge:
        br = table["glue"]["bridge"]
        parts["bridge"] = {r: br["one"][r] + br["cols"][r] * config.cols for r in RESOURCES}
    total = {r: max(0, round(sum(p[r] for p in parts.values()))) for r in RESOURCES}
    total["logic"] = total["lut4"] + 2 * total["ccu2c"]
    total["comb"] = total["logic"] + COMB_PER_DPRAM * total["dpram"]
    util = {"comb": total["comb"] / board.lut4, "ff": total["ff"] / board.ff,
            "ebr": total["ebr"] / board.ebr, "dsp": total["dsp"] / board.dsp}
    why = []
    if util["comb"] > FILL:
        why.append(f"logic {100 * util['comb']:.0f} % of the part's LUTs (more than "
                   f"{100 * FILL:.0f} % does not place)")
    for key, name in (("ff", "flip-flops"), ("ebr", "block RAMs"), ("dsp", "DSP blocks")):
        if util[key] > (FILL if key == "ff" else 1.0):
            why.append(f"{total[key]} {name}, the part has {getattr(board, key)}")
    return {**total, "parts": {k: {r: round(v[r]) for r in RESOURCES} for k, v in parts.items()},
            "utilisation": {k: round(v, 3) for k, v in util.items()},
            "fits": not why, "why": "; ".join(why) or None,
            "fmax_class": fmax_class(util["comb"], table)}


def fmax_class(fill, table=None):
    """The clock class of an engine whose logic fills ``fill`` of the part, from the board
    builds recorded in the table (``fmax``): not a timing analysis."""
    for limit, label in load_table(table)["fmax"]["classes"]:
        if fill <= limit:
            return label
    return load_table(table)["fmax"]["beyond"]


# Calibration -------------------------------------------------------------------------------
def _nnls(x, y):
    """Least squares with no negative coefficient: drop the most negative one and refit."""
    keep = list(range(x.shape[1]))
    while True:
        coef = np.linalg.lstsq(x[:, keep], y, rcond=None)[0] if keep else np.zeros(0)
        if not keep or coef.min() >= 0:
            out = np.zeros(x.shape[1])
            out[keep] = coef
            return out
        keep.pop(int(np.argmin(coef)))


def _sum(points):
    return {r: sum(p[r] for p in points) for r in RESOURCES}


def fit(points):
    """The calibration table from synthesis results ``points`` (``{"kind", "config",
    resource...}`` each, as ``bench/calibrate.py`` records them)."""
    table = {"pe": {}, "coefficients": {}, "glue": {},
             "fmax": FMAX, "points": points}
    for p in points:
        if p["kind"] == "pe":
            c = p["config"]
            table["pe"][pe_key(c["w_format"], c["w_bits"], c["a_bits"])] = \
                {r: p[r] for r in RESOURCES}
    for part, (features, use) in PARTS.items():
        runs = [p for p in points if p["kind"] == part]
        coefs = {}
        for r in RESOURCES:
            rows = [features(_config(p["config"]), table)[r] for p in runs]
            x = np.array([[row[f] for f in use[r]] for row in rows], dtype=float)
            y = np.array([p[r] for p in runs], dtype=float)
            if use[r] in (("pe",), ("counted",)):     # the PEs' DSP blocks, as they are;
                coefs[r] = {use[r][0]: 1.0}           # the rescale unit's, counted
                continue
            coefs[r] = {f: round(float(v), 6) for f, v in zip(use[r], _nnls(x, y))}
        table["coefficients"][part] = coefs
    # The glue: what a whole engine adds to its halves, and the bridge to the engine.
    by = {(p["kind"], json.dumps(p["config"], sort_keys=True)): p for p in points}
    glue, bridge = [], []
    for (kind, key), p in by.items():
        halves = [by.get((k, key)) for k in ("matmul", "rescale", "engine")]
        if kind == "engine" and all(halves[:2]):
            s = _sum(halves[:2])
            glue.append({r: p[r] - s[r] for r in RESOURCES})
        if kind == "bridge" and halves[2]:
            bridge.append((p["config"]["cols"], {r: p[r] - halves[2][r] for r in RESOURCES}))
    table["glue"]["engine"] = {r: round(sum(g[r] for g in glue) / max(1, len(glue)), 1)
                               for r in RESOURCES}
    cols = np.array([[1.0, c] for c, _ in bridge]) if bridge else np.zeros((0, 2))
    line = {r: (_nnls(cols, np.array([d[r] for _, d in bridge], dtype=float))
                if len({c for c, _ in bridge}) >= 2 else
                np.array([sum(d[r] for _, d in bridge) / max(1, len(bridge)), 0.0]))
            for r in RESOURCES}
    table["glue"]["bridge"] = {"one": {r: round(float(line[r][0]), 2) for r in RESOURCES},
                               "cols": {r: round(float(line[r][1]), 2) for r in RESOURCES}}
    table["worst"] = worst_error(table)
    return table


def worst_error(table):
    """The largest relative error of the model on the table's own ``matmul`` and ``rescale``
    points, for logic, FF and EBR: ``{"logic", "ff", "ebr"}``."""
    worst = {"logic": 0.0, "ff": 0.0, "ebr": 0.0}
    for p in table["points"]:
        if p["kind"] not in PARTS:
            continue
        est = estimate_part(p["kind"], _config(p["config"]), table)
        real = {"logic": p["lut4"] + 2 * p["ccu2c"], "ff": p["ff"], "ebr": p["ebr"]}
        model = {"logic": est["lut4"] + 2 * est["ccu2c"], "ff": est["ff"], "ebr": est["ebr"]}
        for k in worst:
            if real[k]:
                e = model[k] / real[k] - 1
                worst[k] = max(worst[k], abs(e), key=abs)
    return {k: round(v, 4) for k, v in worst.items()}


# The clock classes, from the board builds (docs/estimate.md, "asqgen board"): the default
# engine with 64-bit lanes, 75 % of the 25F's LUTs, closed at 100.5-101.5 MHz with three
# seeds of four (router2, timing-driven); with the derived lanes and every block RAM's output
# registered, 66 %, at 99.14, 98.97 and 99.36 MHz with seeds 1, 2 and 3 (an earlier
# netlist: 100.49 with seed 1); the parts alone, out of context: 116-132 MHz.
FMAX = {"classes": [[0.60, "100 MHz (margin: the parts close at 116-132 MHz alone)"],
                    [0.78, "100 MHz with effort (seeds; the default engine, 66 % of the "
                           "25F's LUTs, came within 0.6 to 1 % of it with seeds 1, 2 and 3, and "
                           "an earlier netlist closed at 100.5 MHz with seed 1)"]],
        "beyond": "below 100 MHz likely (a part this full did not close or place)",
        "source": "docs/results.md: The board build; The engine's two halves"}
