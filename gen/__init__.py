"""From a bundle and an array configuration to Verilog and a manifest (``verilog``), and the
cycle model of the generated engine (``cycles``)."""
