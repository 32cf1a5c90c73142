"""A unit in a clock domain of its own: the ``sync`` clock, and the ``sync`` reset one register
later, a register that drives that unit's flip-flops and no others.

On a part, a reset that reaches every flip-flop of a design is one net across the die (in the
layer engine on an ECP5-25F, 2,300 loads, and at 100 MHz the path from its register to the
farthest load was 10 ns of routing); a copy per unit is a net per unit, which the placer can
put amid its loads. The copies of one reset are the same register, so Yosys would merge them:
on an ECP5 each is an ``FD1S3AX`` flip-flop instance, which Yosys leaves alone
(``sim/vendor/FD1S3AX.v`` models it on Verilator).

A unit in such a domain leaves reset one clock after the ``sync`` domain does. ``live``, low
in reset and in that one clock, gates the streams between the ``sync`` domain and the unit
(``gate``): nothing is offered or taken in that clock, so a host that starts at once after
reset sees the same design as one without copies.
"""

from amaranth.hdl import ClockDomain, ClockSignal, DomainRenamer, Instance, ResetSignal, Signal

from .dsp import is_ecp5

__all__ = ["local_domain", "live", "gate"]


def local_domain(m, platform, name, unit):
    """Add ``unit`` to ``m`` as submodule ``name``, in a domain ``name`` with the ``sync``
    clock and its own copy of the ``sync`` reset; return it (renamed)."""
    domain = ClockDomain(name, local=True)
    m.domains += domain
    copy = Signal(name=f"{name}_rst", reset_less=True)
    if is_ecp5(platform):
        m.submodules[f"{name}_rst"] = Instance("FD1S3AX", p_GSR="DISABLED", i_CK=ClockSignal(),
                                               i_D=ResetSignal(), o_Q=copy)
    else:
        m.d.sync += copy.eq(ResetSignal())
    m.d.comb += [domain.clk.eq(ClockSignal()), domain.rst.eq(copy)]
    renamed = DomainRenamer(name)(unit)
    m.submodules[name] = renamed
    return renamed


def live(m):
    """A ``sync`` register that is low in reset and in the clock after (while the units in
    local domains are still in reset), high otherwise."""
    up = Signal(name="live")
    m.d.sync += up.eq(1)
    return up


def gate(m, source, sink, up):
    """Connect stream ``source`` (its ``valid`` and ``payload`` out) to stream ``sink`` (its
    ``ready`` out) while ``up`` is high; neither side sees a transfer while it is low."""
    m.d.comb += [sink.valid.eq(source.valid & up), sink.payload.eq(source.payload),
                 source.ready.eq(sink.ready & up)]
