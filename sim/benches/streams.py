"""Valid/ready stream drivers for cocotb benches, with seeded random stalls.

Both follow the portable handshake pattern for Verilator (cocotb's timing model): drive after
a rising edge, look at ``valid`` and ``ready`` in the read-only phase before the next edge, and
count a transfer there; the payload read in that phase is the one the edge transfers.
"""

from cocotb.triggers import ReadOnly, RisingEdge

__all__ = ["StreamSource", "StreamSink", "port"]


def port(dut, stream, member):
    """The handle of ``stream__member`` (Amaranth's flattened port name)."""
    return getattr(dut, f"{stream}__{member}")


class _Endpoint:
    def __init__(self, dut, stream, clk, rng, pause):
        self._valid, self._ready = port(dut, stream, "valid"), port(dut, stream, "ready")
        self._payload = port(dut, stream, "payload")
        self._clk, self._rng, self._pause = clk, rng, pause
        self.done, self.total = 0, 0          # transfers made and asked for (the watchdog's)


class StreamSource(_Endpoint):
    """Sends integer payloads on ``stream``, idling with probability ``pause`` before each."""

    def __init__(self, dut, stream, clk, rng, pause=0.0):
        super().__init__(dut, stream, clk, rng, pause)
        self._valid.value = 0

    async def send(self, payloads):
        payloads = list(payloads)
        self.done, self.total = 0, len(payloads)
        for payload in payloads:
            while self._rng.random() < self._pause:
                self._valid.value = 0
                await RisingEdge(self._clk)
            self._payload.value = payload
            self._valid.value = 1
            while True:
                await ReadOnly()
                taken = bool(self._ready.value)
                await RisingEdge(self._clk)
                if taken:
                    break
            self.done += 1
        self._valid.value = 0


class StreamSink(_Endpoint):
    """Receives ``count`` payloads (as unsigned ints) from ``stream``, holding ``ready`` low
    with probability ``pause`` on each clock."""

    def __init__(self, dut, stream, clk, rng, pause=0.0):
        super().__init__(dut, stream, clk, rng, pause)
        self._ready.value = 0

    async def receive(self, count):
        received = []
        self.done, self.total = 0, count
        while len(received) < count:
            ready = self._rng.random() >= self._pause
            self._ready.value = int(ready)
            await ReadOnly()
            if ready and self._valid.value == 1:
                received.append(self._payload.value.to_unsigned())
                self.done += 1
            await RisingEdge(self._clk)
        self._ready.value = 0
        return received
