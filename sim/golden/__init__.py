"""The bit-exact golden model (numpy, integers only; knows nothing of Amaranth or PyTorch)."""

from .im2col import im2col
from .matmul import (act_codes, check_acts, check_codes, matmul, matmul_exact, product_table,
                     table_error, value)
from .network import LayerTrace, Trace, layer_accumulators, run_network

__all__ = ["act_codes", "check_acts", "check_codes", "im2col", "matmul", "matmul_exact",
           "product_table", "table_error", "value", "LayerTrace", "Trace", "layer_accumulators", "run_network"]
