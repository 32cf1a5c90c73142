"""asqgen: from a quantized model and an array configuration to Verilog."""

__version__ = "0.1.0"
