"""The boards that ``asqgen estimate``, ``synth`` and ``board`` know, by one name each, with
their part's totals.

The totals are those of the ECP5 family data sheet (Lattice FPGA-DS-02012, table 1.1) as
nextpnr-ecp5 counts them in its utilisation report: ``lut4`` (``TRELLIS_COMB``: LUT4s, a
``CCU2C`` carry cell taking two), ``ff`` (``TRELLIS_FF``), ``ebr`` (``DP16KD`` block RAMs of
18 kbit), ``dsp`` (``MULT18X18D``), ``ramw`` (``TRELLIS_RAMW``: the slices that can write
distributed RAM). The platform is ``amaranth-boards``'s class of the board
(``amaranth_boards.ulx3s``), named here so that nothing below the command line imports it.
"""

from dataclasses import dataclass

from core.errors import UsageError

__all__ = ["Board", "BOARDS", "board"]


@dataclass(frozen=True)
class Board:
    name: str
    device: str           # the part, as amaranth-boards and nextpnr name it
    nextpnr_size: str     # nextpnr-ecp5's option for the part
    package: str          # nextpnr-ecp5's --package
    speed: int
    platform: str         # the class in amaranth_boards.ulx3s
    lut4: int
    ff: int
    ebr: int
    dsp: int
    ramw: int
    clock_mhz: float = 25.0    # the board's oscillator
    uart_baud: int = 115_200   # the host link's default (hw.board_top.DEFAULT_BAUD)


BOARDS = {b.name: b for b in (
    Board("ulx3s-25f", "LFE5U-25F", "--25k", "CABGA381", 6, "ULX3S_25F_Platform",
          lut4=24288, ff=24288, ebr=56, dsp=28, ramw=3036),
    Board("ulx3s-45f", "LFE5U-45F", "--45k", "CABGA381", 6, "ULX3S_45F_Platform",
          lut4=43848, ff=43848, ebr=108, dsp=72, ramw=5481),
    Board("ulx3s-85f", "LFE5U-85F", "--85k", "CABGA381", 6, "ULX3S_85F_Platform",
          lut4=83640, ff=83640, ebr=208, dsp=156, ramw=10455),
)}


def board(name):
    """The ``Board`` named ``name``; a one-line ``UsageError`` naming the known ones."""
    if name not in BOARDS:
        raise UsageError(f"board must be one of {', '.join(BOARDS)}, not {name!r}")
    return BOARDS[name]
