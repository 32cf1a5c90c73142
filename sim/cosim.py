# amaranth: UnusedElaboratable=no
"""The fast co-simulation path: the layer engine inside ``sim.harness.CosimHarness`` on Verilator.

The host packs a layer's stimulus for many samples into the harness's memories (with the
hardware's own Amaranth layouts), one cocotb run loads them, raises ``go``, waits for
``done`` and reads the captured outputs and clock marks back; no Python runs per clock
(``sim.benches.cosim_bench``). A layer whose samples do not fit the memories runs as several
batches within the same cocotb run.

``CosimSim(config, root)`` builds the harness once per configuration (and memory depths);
``run_layer(...)`` runs one layer for any number of samples. The pass encoding is
``sim.engine_sim.pass_plan`` and the parameter words are ``core.regmap.encode``'s, as on the
per-clock path; the words are packed with ``sim.payload``.
"""

import dataclasses
import functools
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hw.accelerator import COUNTERS
from hw.rescale_unit import beta_layout, output_layout, param_layout, residual_layout
from hw.systolic_array import activation_layout, weight_layout

from core import regmap
from core.errors import UsageError

from . import verilator
from .array_sim import act_bits
from .benches.common import CLOCK_NS
from .design import Design
from .engine_sim import pass_plan
from .harness import OWN_CLOCK_ARGS, OWN_CLOCK_MAKE, CosimHarness, Depths, program_layout, rewrite
from .payload import pack, unpack
from .rescale_sim import acc_vectors, output_order, signed_codes

__all__ = ["CosimSim", "CosimPlan", "LayerResult", "thresholds", "SPEED_ARGS", "SPEED_MAKE",
           "TOP"]

TOP = "asq_cosim"

#: Verilator options of the co-simulation build, chosen by measurement
#: (``bench/verilator_options.py``, README "Co-simulation at Verilator speed"): ``-O3`` and
#: fast X handling were as fast as the defaults, C++ ``-O3`` on the model's fast path
#: (``SPEED_MAKE``) 1.26 times faster than the package's default ``-Os``, ``--threads 2``
#: two hundred times slower on the busy 2-core machine.
SPEED_ARGS = ("-O3", "--x-assign", "fast", "--x-initial", "fast", "--no-public-flat-rw")
SPEED_MAKE = ("OPT_FAST=-O3",)

# Only the harness's own ports and memories need to be visible to cocotb; cocotb's default
# --public-flat-rw makes every signal of the design public, which limits Verilator's
# optimisations (its manual), so it is turned off and this control file opens the top only.
_CONTROL_FILE = f'`verilator_config\npublic_flat_rw -module "{TOP}" -var "*"\n'


@dataclass
class LayerResult:
    """One layer for ``n`` samples: ``values`` ``(n, outputs)`` (codes, or ``z`` for the last
    layer, in the golden model's order), ``betas`` ``(n,)``, ``cycles`` per sample (the clocks
    between the ends of successive samples, measured in HDL), ``lasts_ok`` (``last`` exactly on
    every sample's final word), the clocks of all runs, the engine's counters summed over the
    runs (``hw.accelerator.COUNTERS`` and ``tail``: idle clocks after the last activation)
    and the wall time."""

    values: np.ndarray
    betas: np.ndarray
    cycles: np.ndarray
    lasts_ok: bool
    clocks: int
    counters: dict = dataclasses.field(default_factory=dict)
    seconds: float = 0.0


class CosimPlan:
    """Packs layers into harness runs for ``config`` and ``depths`` and collects the results;
    needs no build (it also runs inside the cocotb process, ``sim.benches.cosim_bench``)."""

    def __init__(self, config, depths=None):
        self.config = config
        self.depths = depths or Depths.for_config(config)
        self.layouts = {"param": param_layout(config.index_bits), "beta": beta_layout(),
                        "res": residual_layout(config.cols), "w": weight_layout(config),
                        "a": activation_layout(config)["data"].shape,
                        "pass": program_layout(config), "out": output_layout(config.cols)}

    def program(self, m, W, w_format, w_bits, depthwise=None):
        """The layer's weight rows and program words for passes of ``m`` vectors, the number of
        activation blocks per batch and the ``PassPlan`` (``depthwise``: see
        ``sim.engine_sim.pass_plan``)."""
        cfg = self.config
        plan = pass_plan(cfg, m, W, w_format, w_bits, depthwise=depthwise)
        passes = plan.passes
        weights = np.concatenate([block for _, block, *_ in passes])
        desc = {"shift": np.array([p[2] for p in passes]),
                "drop": np.array([p[3] for p in passes]),
                "first": np.array([p[4] for p in passes]),
                "final": np.array([p[5] for p in passes])}
        offsets = np.array([(p[0] // cfg.rows) * m for p in passes])
        words_w = pack(self.layouts["w"], weights)
        words_pass = pack(self.layouts["pass"], {"desc": desc, "act_offset": offsets})
        blocks = -(-np.shape(W)[0] * plan.repeat // cfg.rows)
        return words_w, words_pass, blocks, plan

    def activations(self, rows, plan):
        """The activation words of one batch's ``A`` (``m x K``, the samples' rows one after
        the other), stacked by ``plan``: block by block of ``rows`` columns, ``m`` vectors
        each; for an array with signed activations (``config.signed_acts``), two's-complement
        codes in sign and magnitude (``sim.array_sim.act_bits``)."""
        r = self.config.rows
        rows = plan.stack(rows)
        m, k = rows.shape
        blocks = -(-k // r)
        padded = np.zeros((m, blocks * r), dtype=np.int64)
        padded[:, :k] = rows
        vectors = padded.reshape(m, blocks, r).transpose(1, 0, 2).reshape(blocks * m, r)
        # A signed array takes each activation as its magnitude and sign (``act_bits``).
        return pack(self.layouts["a"], act_bits(self.config.product_format, vectors))

    def params(self, words):
        """``i_param`` words of ``(address, value, last)`` triples."""
        words = np.array(words, dtype=np.int64).reshape(-1, 3)
        return pack(self.layouts["param"], {"addr": words[:, 0], "value": words[:, 1],
                                            "last": words[:, 2]})

    def out_words(self, channels, positions):
        """Output vectors per sample of a layer of ``channels`` x ``positions`` outputs."""
        return -(-channels // self.config.cols) * positions

    def check(self, name, *, program, weights, activations, params, outputs):
        """Refuse (``UsageError``) a layer whose words per batch do not fit the memories."""
        d = self.depths
        limits = {"program (stim_pass)": (program, d.program), "weights (stim_w)": (weights, d.w),
                  "activations (stim_a)": (activations, d.a),
                  "parameters (stim_param)": (params, d.param),
                  "outputs (cap_out)": (outputs, d.out)}
        for what, (need, depth) in limits.items():
            if need > depth:
                raise UsageError(f"layer {name!r}: {need} words of {what} per batch, the "
                                 f"co-simulation harness holds {depth}")

    def check_layer(self, name, *, positions, W, w_format, w_bits, params, channels,
                    out_positions, depthwise=None):
        """``check`` from a layer's shape alone (nothing packed), before any build."""
        batch = self.config.batch_for(positions)
        m = batch * positions
        plan = pass_plan(self.config, m, W, w_format, w_bits, depthwise=depthwise)
        self.check(name, program=len(plan), weights=len(plan) * self.config.rows,
                   activations=-(-np.shape(W)[0] * plan.repeat // self.config.rows) * m,
                   params=params, outputs=batch * self.out_words(channels, out_positions))

    def layer_runs(self, *, W, w_format, w_bits, samples_rows, betas, param_words, channels,
                   out_positions, residual=None, residual_betas=None, stall=0.0,
                   backpressure=0.0, name="layer", depthwise=None):
        """The harness runs of one layer: its samples in batches of
        ``config.batch_for(positions)``, as many batches a run as the memories hold.

        ``samples_rows``: each sample's ``A`` (``positions x K`` activation codes);
        ``betas``: each sample's ``beta_in``; ``param_words``: the layer's ``(address, value,
        last)`` words; ``channels`` and ``out_positions``: its outputs per sample;
        ``residual``: for a layer with a shortcut, each sample's second operand (the shape of
        its accumulators: an identity shortcut's codes or a projection's ``z``) and
        ``residual_betas`` the identity shortcut's ``beta`` per sample; ``depthwise``: a
        depthwise layer's ``k`` (``sim.engine_sim.pass_plan``).
        """
        d = self.depths
        n = len(samples_rows)
        positions = samples_rows[0].shape[0]
        batch = self.config.batch_for(positions)
        per_sample = self.out_words(channels, out_positions)
        params = self.params(param_words)
        res_betas = [1] * n if residual_betas is None else residual_betas
        betas = pack(self.layouts["beta"], {
            "beta": np.array([regmap.check_beta(int(b)) for b in betas], dtype=np.int64),
            "res": np.array([regmap.check_beta(int(b)) for b in res_betas], dtype=np.int64)})
        per_res = 0 if residual is None else -(-channels // self.config.cols) * positions
        runs, loaded = [], None
        s0 = 0
        while s0 < n:
            size = min(batch, n - s0)                  # samples per batch in this run
            words_w, words_pass, blocks, plan = self.program(size * positions, W, w_format,
                                                             w_bits, depthwise)
            stride = blocks * size * positions
            self.check(name, program=len(words_pass), weights=len(words_w),
                       activations=stride, params=len(params), outputs=size * per_sample)
            if per_res * size > d.res:
                raise UsageError(f"layer {name!r}: {per_res * size} words of the residual "
                                 f"operand (stim_res) per batch, the co-simulation harness "
                                 f"holds {d.res}")
            fit = min(d.a // stride, d.beta // size, d.out // (size * per_sample),
                      d.marks // size, d.res // max(1, per_res * size))
            count = max(1, min(fit, (n - s0) // size))  # whole batches of this size
            group = range(s0, s0 + count * size)
            acts = np.concatenate([
                self.activations(np.concatenate([samples_rows[i] for i in
                                                 group[b * size:(b + 1) * size]]), plan)
                for b in range(count)])
            run = {"batches": count, "samples": len(group), "n_param": len(params),
                   "n_beta": len(group), "n_w": len(words_w), "n_pass": len(words_pass),
                   "m": size * positions, "a_stride": stride, "outputs": per_sample,
                   "channels": channels, "positions": out_positions,
                   "n_out": per_sample * len(group), "stim_param": params.tolist(),
                   "stim_beta": [int(betas[i]) for i in group], "stim_a": acts.tolist(),
                   "n_res": per_res * len(group)}
            if residual is not None:
                vectors = np.concatenate([
                    acc_vectors(np.stack([residual[i] for i in group[b * size:(b + 1) * size]]),
                                self.config.cols)[0] for b in range(count)])
                run["stim_res"] = pack(self.layouts["res"], {"data": vectors}).tolist()
            if loaded != size:                # the program stays loaded for later runs
                run["stim_w"], run["stim_pass"] = words_w.tolist(), words_pass.tolist()
                loaded = size
            # Watchdog: every word at the slowest stall rate, 20 clocks each, and more.
            slow = 1.0 / max(1e-3, 1.0 - max(stall, backpressure))
            words = count * (len(words_w) + len(words_pass) + stride * 8) + \
                len(group) * per_sample * 4 + len(params)
            run["budget"] = int(slow * 20 * words + 20000)
            runs.append(run)
            s0 += len(group)
        return runs

    def collect(self, runs, results, *, signed=False):
        """A ``LayerResult`` from the runs of one layer and what the bench read back;
        ``signed``: the layer's codes are signed (``next_signed``), read as two's complement
        in their low ``Requantizer.CODE_BITS`` bits (``sim.rescale_sim.signed_codes``)."""
        values, betas, cycles, lasts_ok, clocks = [], [], [], True, 0
        counters = dict.fromkeys((*COUNTERS, "tail"), 0)
        cols = self.config.cols
        for run, res in zip(runs, results):
            fields = unpack(self.layouts["out"], res["out"])
            k, per = run["samples"], run["outputs"]
            vectors = fields["value"].reshape(k, per, cols)
            values.append(np.stack([output_order(v, run["channels"], run["positions"], cols)
                                    for v in vectors]))
            betas.append(fields["beta"].reshape(k, per)[:, 0])
            want_last = np.zeros((k, per), dtype=np.int64)
            want_last[:, -1] = 1
            lasts_ok &= bool((fields["last"].reshape(k, per) == want_last).all())
            marks = np.array(res["marks"], dtype=np.int64)
            cycles.append(np.diff(np.concatenate([[0], marks])))
            clocks += res["clocks"]
            for key in counters:
                counters[key] += res["counters"][key]
        values = np.concatenate(values)
        return LayerResult(values=signed_codes(values) if signed else values,
                           betas=np.concatenate(betas),
                           cycles=np.concatenate(cycles), lasts_ok=lasts_ok, clocks=clocks,
                           counters=counters)


def thresholds(seed, stall, backpressure):
    """The harness's run settings: the LFSR seed and the 16-bit thresholds."""
    threshold = lambda p: min(65535, max(0, round(p * 65536)))
    return {"seed": seed & 0xFFFF, "stall": threshold(stall),
            "backpressure": threshold(backpressure)}


def key_sources():
    """The files the harness's Verilog is generated from: ``core/`` and ``hw/``, the harness,
    its stream fields and its clock period."""
    root = Path(__file__).resolve().parent.parent
    return (sorted((root / "core").glob("*.py")) + sorted((root / "hw").glob("*.py"))
            + [root / "sim" / "harness.py", root / "sim" / "benches" / "cosim_fields.py",
               root / "sim" / "benches" / "common.py"])


def _source_key(config, depths):
    """A hash of what the harness's Verilog depends on: the configuration, the depths, the
    Amaranth version and the ``key_sources``."""
    import amaranth

    h = hashlib.sha256(repr((config.as_dict(), depths.as_dict(),
                             amaranth.__version__)).encode())
    for source in key_sources():
        h.update(source.read_bytes())
    return h.hexdigest()


class CosimSim(Design):
    """The harness of ``config`` built for Verilator under ``root`` (once per configuration
    and memory depths); ``plan`` packs the stimulus, ``run(job)`` runs a bench job.

    Converting the harness takes seconds (its deep memories), so its build is keyed by its
    sources (``sim.design.Design``'s ``source_key``): it is converted again only when the
    configuration, the depths or the generator's sources change. ``platform``: see
    ``sim.design.Design`` (``hw.dsp.Ecp5Target``: the engine as it is built for an ECP5)."""

    def __init__(self, config, root, *, depths=None, platform=None):
        self.config = config
        self.plan = CosimPlan(config, depths)
        self.depths = self.plan.depths
        key = _source_key(config, self.depths) + f":{getattr(platform, 'family', None)}"
        super().__init__(CosimHarness(config=config, depths=self.depths), root, TOP,
                         source_key=key, rewrite=functools.partial(rewrite, period_ns=CLOCK_NS),
                         control=_CONTROL_FILE, args=SPEED_ARGS + OWN_CLOCK_ARGS,
                         make_flags=SPEED_MAKE + OWN_CLOCK_MAKE, platform=platform)

    def run(self, job, *, name, progress=None):
        """Run ``job`` (see ``sim.benches.cosim_bench``) in one cocotb run; ``progress(state)``
        is called with the bench's progress reports while it runs.

        The job and the result travel as JSON (a ``"network"`` job's bundle as a saved bundle
        and its input codes as ``.npy``: no pickle), in a folder of this run's own under
        ``<build>/<name>/``, removed after success."""
        base = (self.dir / name).resolve()
        base.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=base, prefix=f"job-{os.getpid()}-"))
        paths = {k: str(work / f"{k}.json") for k in ("job", "result", "progress")}
        if job["mode"] == "network":
            job = _network_job(job, work)
        Path(paths["job"]).write_text(json.dumps(job))
        watcher = _Watcher(paths["progress"], progress) if progress else None
        try:
            verilator.run_bench(_QuickStart(self._runner), top=TOP,
                                bench="sim.benches.cosim_bench", job=paths, work_dir=work)
        finally:
            if watcher:
                watcher.stop()
        result = json.loads(Path(paths["result"]).read_text())
        net = result.get("network")
        if net is not None and "arrays" in net:
            with np.load(net.pop("arrays"), allow_pickle=False) as arrays:
                for key in ("outputs", "betas"):
                    net[key] = [arrays[f"{key}_{i}"] for i in range(net["layers"])]
        shutil.rmtree(work, ignore_errors=True)
        return result

    def run_layer(self, *, seed=0, stall=0.0, backpressure=0.0, name="layer", **layer):
        """One layer (``CosimPlan.layer_runs`` arguments) in one cocotb run: a
        ``LayerResult``."""
        runs = self.plan.layer_runs(stall=stall, backpressure=backpressure, name=name, **layer)
        t0 = time.monotonic()
        out = self.run({"mode": "runs", "settings": thresholds(seed, stall, backpressure),
                        "runs": runs}, name=name)
        result = self.plan.collect(runs, out["runs"])
        result.seconds = time.monotonic() - t0
        return result


class _QuickStart:
    """The cocotb runner, its simulations started without pytest's rewriting of the asserts
    of every module the bench imports (cocotb's default; seconds a run, and the bench's own
    messages say what failed)."""

    def __init__(self, runner):
        self._runner = runner

    @property
    def build_dir(self):
        return self._runner.build_dir

    def test(self, *, extra_env=None, **kwargs):
        env = {"COCOTB_REWRITE_ASSERTION_FILES": "cosim_bench.py", **(extra_env or {})}
        return self._runner.test(extra_env=env, **kwargs)


def _network_job(job, work):
    """A ``"network"`` job in plain files: the bundle saved (without its reference data), the
    input codes as ``.npy``, the configuration and depths as dicts."""
    from core.bundle import save

    bundle = dataclasses.replace(job["bundle"], reference={})
    save(bundle, work / "bundle")
    np.save(work / "codes.npy", np.asarray(job["codes"], dtype=np.int64))
    return dict(job, bundle=str(work / "bundle"), codes=str(work / "codes.npy"),
                config=job["config"].as_dict(), depths=job["depths"].as_dict())


class _Watcher:
    """Polls the bench's progress file from a thread and hands each new report on."""

    def __init__(self, path, callback, interval=0.5):
        self._path, self._callback, self._interval = Path(path), callback, interval
        self._stop = threading.Event()
        self._last = None
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        while not self._stop.wait(self._interval):
            self._poll()

    def _poll(self):
        try:
            text = self._path.read_text()
            state = json.loads(text)
        except (OSError, ValueError):
            return
        if text != self._last:
            self._last = text
            self._callback(state)

    def stop(self):
        self._stop.set()
        self._thread.join()
        self._poll()
