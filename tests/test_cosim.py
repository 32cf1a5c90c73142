# amaranth: UnusedElaboratable=no
"""The co-simulation path (``sim.cosim``, ``sim.harness``): packing with the hardware's layouts,
the harness's watchdog message, the per-step clocks counted in HDL, and the progress line.
The networks themselves are compared with the golden model in ``test_network_rtl.py`` and
``test_flow.py``, through this path."""

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.config import ArrayConfig
from core.errors import UsageError
from core.sizing import config_for_bundle
from hw.rescale_unit import output_layout, param_layout
from hw.systolic_array import activation_layout, weight_layout
from sim.cosim import CosimPlan, CosimSim, key_sources
from sim.engine_sim import PassPlan
from sim.harness import program_layout, strip_zero_init
from sim.payload import pack, unpack
from sim.network_sim import layer_params, layer_rows
from sim.progress import ProgressLine, format_progress
from core.errors import RtlError

from .bundles import random_bundle
from .conftest import ROOT

CFG = ArrayConfig(rows=3, cols=5, a_bits=3, w_bits=3)


def test_pack_equals_amaranth_layout_constants():
    rng = np.random.default_rng(0)
    acts = rng.integers(0, 8, (20, 3))
    last = rng.integers(0, 2, 20)
    words = pack(activation_layout(CFG), {"data": acts, "last": last})
    for i in range(20):
        want = activation_layout(CFG).const({"data": acts[i].tolist(), "last": int(last[i])})
        assert words[i] == want.as_bits()
    w = rng.integers(0, 8, (20, 5))
    assert list(pack(weight_layout(CFG), w)) == [
        weight_layout(CFG).const(row.tolist()).as_bits() for row in w]
    addr, value = rng.integers(0, 1 << 16, 20), rng.integers(-2 ** 31, 2 ** 31, 20)
    last = rng.integers(0, 2, 20)
    assert list(pack(param_layout(12), {"addr": addr, "value": value, "last": last})) == [
        param_layout(12).const({"addr": int(a), "value": int(v), "last": int(x)}).as_bits()
        for a, v, x in zip(addr, value, last)]
    desc = {"shift": rng.integers(0, 8, 20), "drop": rng.integers(0, CFG.frac_bits + 1, 20),
            "first": rng.integers(0, 2, 20), "final": rng.integers(0, 2, 20)}
    offset = rng.integers(0, 1 << 16, 20)
    layout = program_layout(CFG)
    assert list(pack(layout, {"desc": desc, "act_offset": offset})) == [
        layout.const({"desc": {k: int(v[i]) for k, v in desc.items()},
                      "act_offset": int(offset[i])}).as_bits() for i in range(20)]


def test_unpack_inverts_the_output_layout():
    layout = output_layout(2)
    value = np.array([[0, 7], [-1, 1], [2 ** 63 - 1, 0], [-2 ** 63, 5], [12345, -3]])
    beta = np.array([1, 2, 3, 4, 2 ** 21 - 1])
    last = np.array([0, 1, 0, 1, 1])
    words = [layout.const({"value": v.tolist(), "beta": int(b), "last": int(x)}).as_bits()
             for v, b, x in zip(value, beta, last)]
    got = unpack(layout, words)
    assert (got["value"] == value).all() and (got["beta"] == beta).all()
    assert (got["last"] == last).all()


def test_activations_are_stored_block_by_block():
    plan = CosimPlan(CFG)
    a = np.arange(4 * 7).reshape(4, 7) % 8               # m = 4, K = 7: three blocks of 3
    words = plan.activations(a, PassPlan([]))
    assert len(words) == 12
    unpacked = [[(int(w) >> (3 * i)) & 7 for i in range(3)] for w in words]
    padded = np.zeros((4, 9), dtype=int)
    padded[:, :7] = a
    assert unpacked == [padded[m, 3 * b:3 * b + 3].tolist() for b in range(3) for m in range(4)]


def test_a_layer_that_does_not_fit_is_refused():
    from sim.harness import Depths

    plan = CosimPlan(CFG, Depths(a=8))
    with pytest.raises(UsageError, match=r"^layer 'x': 12 words of activations \(stim_a\) per "
                                         r"batch, the co-simulation harness holds 8$"):
        plan.layer_runs(W=np.zeros((7, 2), dtype=int), w_format="post", w_bits=3,
                        samples_rows=[np.zeros((4, 7), dtype=int)], betas=[1 << 14],
                        param_words=[(0, 0, 1)], channels=2, out_positions=1, name="x")


def test_zero_initial_blocks_of_the_stimulus_memories_are_dropped():
    text = ("  reg [3:0] stim_a [1:0];\n  initial begin\n    stim_a[0] = 4'h0;\n"
            "    stim_a[1] = 4'h0;\n  end\n  reg [3:0] mem_u [1:0];\n  initial begin\n"
            "    mem_u[0] = 4'h0;\n  end\n")
    assert strip_zero_init(text) == ("  reg [3:0] stim_a [1:0];\n  reg [3:0] mem_u [1:0];\n"
                                     "  initial begin\n    mem_u[0] = 4'h0;\n  end\n")


def test_a_hung_layer_names_the_stuck_stream(build_root):
    """Asking for one output word more than the layer makes: the watchdog fires and says
    which streams stopped where."""
    bundle = random_bundle(seed=0, c1=8, c2=12)
    cfg = config_for_bundle(bundle, rows=4, cols=4)
    sim = CosimSim(cfg, build_root)
    layer = bundle.layers[-1]
    codes = np.random.default_rng(0).integers(0, 16, (1,) + tuple(layer.in_shape))
    vectors = -(-layer.out_channels // cfg.cols)            # one position: a vector a block
    with pytest.raises(RtlError, match=rf"the layer engine hung: no result after \d+ clocks; "
                                         rf"o_out stopped at word {vectors} of {2 * vectors} "
                                         rf"\(not valid\)"):
        sim.run_layer(W=layer.weight_matrix, w_format=layer.w_format, w_bits=layer.w_bits,
                      samples_rows=layer_rows(layer, codes), betas=[1 << 14],
                      param_words=layer_params(layer, cfg),
                      channels=layer.out_channels, out_positions=2, name="hung")


def test_clocks_per_sample_are_counted_in_hdl(build_root):
    bundle = random_bundle(seed=0, c1=8, c2=12)
    cfg = config_for_bundle(bundle, rows=4, cols=4)
    sim = CosimSim(cfg, build_root)
    layer = bundle.layers[-1]
    codes = np.random.default_rng(1).integers(0, 16, (3,) + tuple(layer.in_shape))
    kwargs = dict(W=layer.weight_matrix, w_format=layer.w_format, w_bits=layer.w_bits,
                  samples_rows=layer_rows(layer, codes), betas=[1 << 14] * 3,
                  param_words=layer_params(layer, cfg),
                  channels=layer.out_channels, out_positions=1)
    calm = sim.run_layer(name="calm", **kwargs)
    busy = sim.run_layer(name="busy", stall=0.5, backpressure=0.5, seed=3, **kwargs)
    assert (calm.values == busy.values).all() and (calm.betas == busy.betas).all()
    assert calm.lasts_ok and busy.lasts_ok
    # The marks add up to the run's clocks; stalls only add clocks.
    assert calm.clocks == calm.cycles.sum() and busy.clocks == busy.cycles.sum()
    assert busy.clocks > calm.clocks
    # Every clock is counted once, by cause; the MAC clocks are the activation vectors sent.
    for run in (calm, busy):
        c = run.counters
        assert c["mac"] + c["weight"] + c["stall"] + c["idle"] == run.clocks
        assert 0 < c["tail"] <= c["idle"]
    assert calm.counters["mac"] == busy.counters["mac"]


def test_progress_line():
    state = {"layer": 1, "layers": 4, "steps_done": 160, "steps": 400, "clocks": 200_000}
    assert format_progress(state, 2.0, ["conv1", "conv2", "conv3", "fc4"]) == (
        "  layer conv2 (2/4), image 60/100, 100,000 clocks/s, about 3 s left")
    state["seconds"] = 4.0                                         # the simulator's own clock
    assert format_progress(state, 100.0, None) == (
        "  layer (2/4), image 60/100, 50,000 clocks/s, about 6 s left")
    assert ProgressLine.for_stream(io.StringIO()) is None          # not a terminal: off


def test_the_build_key_covers_every_source_of_the_harness():
    """Every module of ``core/``, ``hw/`` and ``sim/`` that building the harness's Verilog
    imports is hashed into the key of its cached build (one left out would let a stale build
    run with new host code)."""
    code = ("import sys; from core.config import ArrayConfig; "
            "from sim.harness import CosimHarness, Depths; from gen.verilog import verilog_text; "
            "c = ArrayConfig(rows=2, cols=2, max_channels=4, max_m=4, max_k=16); "
            "verilog_text(CosimHarness(config=c, depths=Depths.for_config(c)), 'top'); "
            "print(*[getattr(m, '__file__', None) or '' for m in list(sys.modules.values())])")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    files = {Path(f).resolve() for f in result.stdout.split() if f}
    used = {f for f in files if f.is_relative_to(ROOT) and f.name != "__init__.py"
            and f.relative_to(ROOT).parts[0] in ("core", "hw", "sim")}
    assert ROOT / "core" / "regmap.py" in used and ROOT / "sim" / "harness.py" in used
    assert used - {p.resolve() for p in key_sources()} == set()
