"""The bit-exact golden model (numpy, integers only; knows nothing of Amaranth or PyTorch)."""

from .matmul import check_codes, matmul, matmul_exact, product_table, table_error

__all__ = ["check_codes", "matmul", "matmul_exact", "product_table", "table_error"]
