"""The weight-stationary systolic array with valid/ready streams."""

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .block_fifo import BlockFIFO
from .operand import OperandEncoder, code_layout, operand_layout
from .pe import ProcessingElement

__all__ = ["SystolicArray", "weight_layout", "activation_layout", "result_layout"]


def weight_layout(config):
    """One row of a weight tile: ``cols`` weight codes."""
    return data.ArrayLayout(unsigned(config.w_bits), config.cols)


def activation_layout(config):
    """One activation vector (a row of ``A``, ``rows`` codes) and the tile's ``last`` flag; with
    ``config.signed_acts`` each code is a magnitude and a ``neg`` bit (``hw.operand.code_layout``,
    ``a_bits + 1`` bits: the host converts two's complement to sign-magnitude)."""
    return data.StructLayout({
        "data": data.ArrayLayout(code_layout(config.product_format), config.rows),
        "last": 1,
    })


def result_layout(config):
    """One result vector (``cols`` accumulators) and the ``last`` flag of its activation; with
    split ``post`` sums ``data`` holds the even sums and ``odd`` the odd ones."""
    fields = {"data": data.ArrayLayout(signed(config.acc_bits), config.cols)}
    if config.split:
        fields["odd"] = data.ArrayLayout(signed(config.acc_bits), config.cols)
    return data.StructLayout({**fields, "last": 1})


class SystolicArray(wiring.Component):
    """A ``rows x cols`` weight-stationary array computing ``A (M x K) x W (K x N)`` tiles.

    A tile, ``K <= rows`` and ``N <= cols`` (the host pads with zero codes), is ``rows``
    transfers on ``i_w`` (row ``k`` of ``W`` in transfer ``k``) and ``M >= 1`` transfers on
    ``i_a`` (row ``m`` of ``A`` in transfer ``m``, ``last`` set on the final one); one result
    per activation leaves on ``o_r``, in order, ``last`` copied.

    Tiles follow each other with no gap: the weights are double-buffered in the PEs
    (``hw.pe``). A tile's weights load into the shadow registers while the previous tile runs,
    and its first activation carries a *swap* bit along each row that switches every PE to
    them as it passes. Shadow row ``k`` may be overwritten only once the previous swap has
    passed all of row ``k`` (``k + cols`` clocks after that tile started), so a tile takes
    ``max(M, rows + cols)`` clocks in steady state and the array issues a MAC on every clock
    when ``M >= rows + cols``. The first activation of a tile waits until its weights are all
    loaded (``wait_weights`` says so, for the cycle counters).

    Activation ``k`` flows right along PE row ``k`` and partial sums flow down the columns;
    the skew of the inputs and the de-skew of the results are inside the array. Each PE takes
    its product into a product register and adds it to the partial sum a clock later
    (``hw.pe``); since every row does, the rows stay aligned. The ``post`` table of row ``k``
    is looked up before the row's last skew register (row 0 has one too, as each weight row
    has an input register), so that the lookup and the multiplier are in different clocks and
    the handshake ends at registers. The pipeline never stalls: the results go into a queue of
    ``rows + cols + 5`` vectors, and an activation is accepted only while the queue will have
    room for its result, so that a stalled ``o_r`` stops ``i_a`` (``i_a.ready`` is a
    register's comparison, and no ``ready`` reaches the array's registers).

    Parameters
    ----------
    config : core.config.ArrayConfig

    Members
    -------
    i_w : In(stream.Signature(weight_layout(config)))
    i_a : In(stream.Signature(activation_layout(config)))
        For ``config.signed_acts``, each activation as its magnitude and sign (``hw.operand``).
    o_r : Out(stream.Signature(result_layout(config)))
    wait_weights : Out(1)
        An activation that starts a tile is offered but its weights are not all loaded.

    Latency: ``config.latency = rows + cols + 4`` clocks from an ``i_a`` transfer to its
    result being valid on ``o_r`` (the input register, the pipeline, then the queue's three).
    Throughput: one vector per clock while running.
    """

    def __init__(self, *, config):
        self._config = config
        super().__init__({
            "i_w": In(stream.Signature(weight_layout(config))),
            "i_a": In(stream.Signature(activation_layout(config))),
            "o_r": Out(stream.Signature(result_layout(config))),
            "wait_weights": Out(1),
        })

    config = property(lambda self: self._config)

    def elaborate(self, platform):
        cfg = self._config
        rows, cols = cfg.rows, cfg.cols
        depth = rows + cols + 1             # the pipeline; the queue adds three clocks
        m = Module()

        pes = [[ProcessingElement(config=cfg, row=r) for _ in range(cols)] for r in range(rows)]
        chains = ("psum", "psum_odd") if cfg.split else ("psum",)
        for r in range(rows):
            for c in range(cols):
                m.submodules[f"pe_{r}_{c}"] = pes[r][c]

        # The pipeline never stalls (no enable reaches a PE: on a part, a stall is one net to
        # every register of the array). Results go into a queue; an activation is accepted
        # only when the queue will have room for its result (``room``: free entries less the
        # results on their way), so that a stalled ``o_r`` stops ``i_a`` instead.
        valid = [Signal(name=f"valid_{i}") for i in range(depth)]
        last = [Signal(name=f"last_{i}") for i in range(depth)]
        queue_depth = depth + 5             # a result a clock: covers the credit's way round
        room = Signal(range(queue_depth + 1), init=queue_depth)
        loaded = Signal()                   # the shadow registers hold the next tile
        tile_start = Signal(init=1)         # the next activation starts a tile
        accept = self.i_a.valid & self.i_a.ready
        with m.If(accept):
            m.d.sync += tile_start.eq(self.i_a.payload.last)
        m.d.sync += [valid[0].eq(accept), last[0].eq(self.i_a.payload.last)]
        m.d.sync += [valid[i].eq(valid[i - 1]) for i in range(1, depth)]
        m.d.sync += [last[i].eq(last[i - 1]) for i in range(1, depth)]

        # Skew: activation k reaches PE row k after k + 1 clocks, the swap bit of a tile's
        # first activation (``accept & tile_start``) with it. Each row's operand encoder (the
        # post table) sits before the row's last skew register, which holds the whole operand
        # (code and table entry): the lookup and the PE's multiplier are in different clocks,
        # and the handshake (the host's valid, the credit) ends at a register. The weight rows
        # are registered at the input likewise (below), so the two keep their relative timing.
        starts = accept & tile_start
        for r in range(rows):
            a = self.i_a.payload.data[r]
            swap = starts
            for i in range(r):
                delayed = Signal(code_layout(cfg.product_format), name=f"skew_{r}_{i}",
                                 reset_less=True)
                delayed_swap = Signal(name=f"skew_swap_{r}_{i}")
                m.d.sync += [delayed.eq(a), delayed_swap.eq(swap)]
                a, swap = delayed, delayed_swap
            m.submodules[f"operand_{r}"] = encoder = OperandEncoder(fmt=cfg.product_format)
            m.d.comb += encoder.a.eq(a)
            x = Signal(operand_layout(cfg.product_format), name=f"skew_{r}_{r}", reset_less=True)
            delayed_swap = Signal(name=f"skew_swap_{r}_{r}")
            m.d.sync += [x.eq(encoder.x), delayed_swap.eq(swap)]
            swap = delayed_swap
            m.d.comb += [pes[r][0].x_in.eq(x), pes[r][0].swap_in.eq(swap)]

        # At least one bit: a 0-bit signal (rows = 1) becomes an illegal [-1:0] in Verilog.
        weight_row = Signal(range(max(rows, 2)), name="weight_row")
        w_in = Signal.like(self.i_w.payload, name="w_in", reset_less=True)
        w_load = Signal(rows, name="w_load")         # one-hot: the shadow row written
        m.d.sync += [w_in.eq(self.i_w.payload), w_load.eq(0)]
        for r in range(rows):
            for c in range(cols):
                pe = pes[r][c]
                m.d.comb += [pe.w_in.eq(w_in[c]), pe.w_load.eq(w_load[r])]
                if c > 0:
                    m.d.comb += [pe.x_in.eq(pes[r][c - 1].x_out),
                                 pe.swap_in.eq(pes[r][c - 1].swap_out)]
                if r > 0:
                    for chain in chains:
                        m.d.comb += getattr(pe, f"{chain}_in").eq(
                            getattr(pes[r - 1][c], f"{chain}_out"))

        # De-skew: column c is c clocks late; delay it by the remaining cols - 1 - c clocks.
        # Then the queue.
        result = Signal(result_layout(cfg))
        for chain, field in zip(chains, ("data", "odd")):
            for c in range(cols):
                s = getattr(pes[rows - 1][c], f"{chain}_out")
                for i in range(cols - 1 - c):
                    delayed = Signal.like(s, name=f"deskew_{field}_{c}_{i}", reset_less=True)
                    m.d.sync += delayed.eq(s)
                    s = delayed
                m.d.comb += result[field][c].eq(s)
        m.d.comb += result.last.eq(last[-1])
        # In block RAM (``hw.block_fifo``, ``SyncFIFOBuffered``'s behaviour): a queue of
        # ``rows + cols + 5`` vectors in distributed RAM took about 90 of its cells, 1,100 LUTs.
        # Registered: the block RAM's output (5.8 ns after the clock on an ECP5) went through
        # the engine's skid buffer's multiplexer, 10.3 ns in all.
        m.submodules.results = queue = BlockFIFO(width=len(result.as_value()),
                                                 depth=queue_depth, registered=True)
        taken = self.o_r.valid & self.o_r.ready
        m.d.comb += [queue.w_en.eq(valid[-1]), queue.w_data.eq(result),
                     self.o_r.valid.eq(queue.r_rdy), self.o_r.payload.eq(queue.r_data),
                     queue.r_en.eq(self.o_r.ready)]
        room_n = Signal.like(room)
        has_room = Signal(init=1)           # == room != 0, a register (i_a.ready's one LUT)
        m.d.comb += room_n.eq(room - accept + taken)
        m.d.sync += [room.eq(room_n), has_room.eq(room_n != 0)]

        # Weight loading into the shadow registers. ``since``: clocks since the last
        # tile started, counting its start (saturating); shadow row k is free once the swap has
        # passed the row's last PE, k + cols - 1 clocks after the start. (A PE reads
        # its weight registers in the clock in which the activation is at its input, the
        # product register's clock; only the add into the partial sum comes later. The table
        # lookup before the last skew register moves nothing either: the swap bit still reaches
        # PE (k, 0) k clocks after the start.)
        # ``i_w.ready`` is a register (``w_ready``), computed from the next state, so that the
        # comparison is not in series with the row decode and the shadow registers' enables.
        since = Signal(range(rows + cols + 1), init=rows + cols)
        w_ready = Signal(init=1)            # == ~loaded & (since >= weight_row + cols)
        loaded_n, since_n, row_n = Signal.like(loaded), Signal.like(since), Signal.like(weight_row)
        m.d.comb += [loaded_n.eq(loaded), since_n.eq(since), row_n.eq(weight_row)]
        with m.If(accept & tile_start):
            m.d.comb += [loaded_n.eq(0), since_n.eq(1)]
        with m.Elif(since != rows + cols):
            m.d.comb += since_n.eq(since + 1)
        m.d.comb += self.i_w.ready.eq(w_ready)
        with m.If(self.i_w.valid & w_ready):
            with m.Switch(weight_row):
                for r in range(rows):
                    with m.Case(r):
                        m.d.sync += w_load[r].eq(1)
            m.d.comb += row_n.eq(weight_row + 1)
            with m.If(weight_row == rows - 1):
                m.d.comb += [row_n.eq(0), loaded_n.eq(1)]
        m.d.sync += [loaded.eq(loaded_n), since.eq(since_n), weight_row.eq(row_n),
                     w_ready.eq(~loaded_n & (since_n >= row_n + cols))]
        m.d.comb += [self.i_a.ready.eq(has_room & (~tile_start | loaded)),
                     self.wait_weights.eq(self.i_a.valid & tile_start & ~loaded)]
        return m
