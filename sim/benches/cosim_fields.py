"""The names that ``sim.harness.CosimHarness``, its cocotb bench (``sim.benches.cosim_bench``)
and the plain C++ harness (``bench/plain_main.cpp``, its field list generated from these)
share, defined once. No Amaranth here: the bench's process imports this.

* ``STREAMS``: the harness's streams, in the order of its ``waiting`` bits;
* ``COUNTS``: the ports that give a run its shape (``sim.harness``'s module docstring);
* ``MEMORIES``: the stimulus memories, in the order of the bits of ``bulk_load_mask``
  (``sim.harness.add_bulk_transfers``).
"""

__all__ = ["STREAMS", "COUNTS", "MEMORIES"]

STREAMS = ("i_param", "i_beta", "i_res", "i_w", "i_a", "i_pass", "o_out")
COUNTS = ("batches", "n_param", "n_beta", "n_res", "n_w", "n_pass", "m", "a_stride", "n_out")
MEMORIES = ("stim_param", "stim_beta", "stim_res", "stim_w", "stim_a", "stim_pass")
