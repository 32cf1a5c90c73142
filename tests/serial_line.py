"""The far end of a serial line in Amaranth's simulator: 8N1 frames sent bit by bit at any bit
length (a float: the clocks per bit of a host whose baud rate is off), and frames received by
sampling the middle of each bit. Independent of ``hw.uart``: the tests compare the two."""

__all__ = ["frame_bits", "send_bytes", "receive_bytes", "SerialPort"]


def frame_bits(byte):
    """Start bit, eight data bits (least significant first), stop bit."""
    return [0] + [(byte >> i) & 1 for i in range(8)] + [1]


async def send_bytes(ctx, line, data, clocks_per_bit):
    """Drive ``line`` with the frames of ``data``, each bit ``clocks_per_bit`` clocks (the edges
    rounded to whole clocks from the start, so that a fractional length does not drift)."""
    t = 0.0
    now = 0
    for byte in data:
        for bit in frame_bits(byte):
            ctx.set(line, bit)
            t += clocks_per_bit
            n = round(t) - now
            now += n
            await ctx.tick().repeat(n)


def receive_bytes(line, clocks_per_bit, out, errors=None):
    """A background testbench (``sim.add_testbench(..., background=True)``) that appends every
    byte framed on ``line`` to ``out`` (and a bad stop bit's byte to ``errors``)."""
    async def process(ctx):
        while True:
            await ctx.tick()
            if ctx.get(line):
                continue
            await ctx.tick().repeat(clocks_per_bit // 2)
            if ctx.get(line):
                continue                            # a glitch
            byte = 0
            for i in range(8):
                await ctx.tick().repeat(clocks_per_bit)
                byte |= ctx.get(line) << i
            await ctx.tick().repeat(clocks_per_bit)
            if ctx.get(line):
                out.append(byte)
            elif errors is not None:
                errors.append(byte)
    return process


class SerialPort:
    """A byte port (``write``, ``read``) for ``hw.host_bridge.HostLink`` whose far end is the
    simulated ``rx``/``tx`` pair of a design: ``read`` runs the simulator until the bytes are in.
    """

    def __init__(self, sim, rx, tx, clocks_per_bit, period, *, budget=200_000):
        self._sim, self._period, self._budget = sim, period, budget
        self._pending = bytearray()
        self._received = bytearray()
        self.clocks = 0
        sim.add_testbench(self._driver(rx, clocks_per_bit), background=True)
        sim.add_testbench(receive_bytes(tx, clocks_per_bit, self._received), background=True)

    def _driver(self, rx, clocks_per_bit):
        async def process(ctx):
            while True:
                if self._pending:
                    byte = self._pending.pop(0)
                    await send_bytes(ctx, rx, [byte], clocks_per_bit)
                else:
                    await ctx.tick()
        return process

    def write(self, data):
        self._pending += data

    def read(self, n):
        step = 64
        spent = 0
        while len(self._received) < n and spent < self._budget:
            self.clocks += step
            spent += step
            self._sim.run_until(self.clocks * self._period)
        data = bytes(self._received[:n])
        del self._received[:n]
        return data

