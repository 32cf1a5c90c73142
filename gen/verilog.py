"""From an array configuration to Verilog and a JSON manifest of its ports and parameters."""

import json
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Value
from amaranth.lib import wiring

from hw.multiplier import StandaloneMultiplier
from hw.systolic_array import SystolicArray

__all__ = ["MANIFEST_FORMAT", "ports", "write_verilog", "generate_array", "generate_multiplier"]

MANIFEST_FORMAT = 1


def ports(component):
    """The Verilog ports of ``component`` as Amaranth names them: ``clk`` and ``rst`` for
    synchronous designs, then every signature member, its path joined with ``__``."""
    result = []
    for path, member, value in component.signature.flatten(component):
        result.append({
            "name": "__".join(str(p) for p in path),
            "direction": "input" if member.flow == wiring.In else "output",
            "width": len(Value.cast(value)),
            "signed": Value.cast(value).shape().signed,
        })
    return result


def write_verilog(component, out_dir, name, *, clocked):
    """Convert ``component`` to ``out_dir/name.v``; return the path and the port list."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = verilog.convert(component, name=name, emit_src=False)
    path = out_dir / f"{name}.v"
    path.write_text(text)
    clock = [{"name": "clk", "direction": "input", "width": 1, "signed": False},
             {"name": "rst", "direction": "input", "width": 1, "signed": False}]
    return path, (clock if clocked else []) + ports(component)


def generate_array(config, out_dir, *, name="asq_array"):
    """Write ``name.v`` and ``manifest.json`` for ``config`` into ``out_dir``; return the
    manifest (a dict)."""
    from . import __version__

    top = SystolicArray(config=config)
    path, port_list = write_verilog(top, out_dir, name, clocked=True)
    fmt = config.product_format
    manifest = {
        "format": MANIFEST_FORMAT,
        "generator": f"asqgen {__version__}",
        "top": name,
        "verilog": path.name,
        "config": config.as_dict(),
        "derived": {
            "magnitude_bits": config.magnitude_bits,
            "psum_bits": [config.psum_bits(r) for r in range(config.rows)],
            "table_frac_bits": config.table_frac_bits,
            "table": fmt.table,
            "latency": config.latency,
            "tile": {"max_k": config.rows, "max_n": config.cols},
        },
        "streams": {
            "i_w": {"payload": f"cols x w_bits: weight row k of the tile, column c in bits "
                               f"[c*{config.w_bits}, (c+1)*{config.w_bits})"},
            "i_a": {"payload": f"rows x a_bits activation codes (row k in bits "
                               f"[k*{config.a_bits}, (k+1)*{config.a_bits})), then 1 bit last"},
            "o_r": {"payload": f"cols x acc_bits signed accumulators (column n in bits "
                               f"[n*{config.acc_bits}, (n+1)*{config.acc_bits})), then 1 bit "
                               f"last"},
        },
        "ports": port_list,
    }
    (Path(out_dir) / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def generate_multiplier(fmt, out_dir, *, name="asq_multiplier"):
    """Write a lone multiplier of ``numerics.ProductFormat`` ``fmt`` (for its exhaustive test)."""
    mul = StandaloneMultiplier(fmt=fmt)
    path, _ = write_verilog(mul, out_dir, name, clocked=False)
    return path
