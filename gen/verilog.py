"""From an array configuration to Verilog and a JSON manifest of its ports and parameters."""

import json
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Value
from amaranth.lib import wiring

from core import __version__, regmap
from core.files import write_text
from hw.accelerator import Accelerator
from hw.multiplier import StandaloneMultiplier
from hw.systolic_array import SystolicArray

__all__ = ["MANIFEST_FORMAT", "ports", "port_list", "verilog_text", "write_verilog",
           "generate_array", "generate_accelerator", "generate_multiplier"]

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


def verilog_text(component, name, platform=None):
    """The Verilog of ``component`` with top module ``name``, elaborated for ``platform`` (by
    default none: portable Verilog; an ECP5's has DSP blocks, see ``hw.dsp``)."""
    return verilog.convert(component, name=name, emit_src=False, platform=platform)


def write_verilog(component, out_dir, name, *, clocked, text=None):
    """Convert ``component`` (or take its ``text``) to ``out_dir/name.v``; return the path and
    the port list."""
    out_dir = Path(out_dir)
    path = write_text(out_dir / f"{name}.v",      # atomic: parallel runs may share it
                      verilog_text(component, name) if text is None else text)
    return path, port_list(component, clocked=clocked)


def port_list(component, *, clocked):
    """``ports(component)``, after ``clk`` and ``rst`` for a synchronous design."""
    clock = [{"name": "clk", "direction": "input", "width": 1, "signed": False},
             {"name": "rst", "direction": "input", "width": 1, "signed": False}]
    return (clock if clocked else []) + ports(component)


def rescale_dsp_blocks(config):
    """``{"lane", "total"}``: the 18 x 18 DSP blocks of one rescale lane (its affine maps and
    its requantizer, at ``config.widths``) and of the unit (the adapter borrows lane 0's)."""
    from hw.rescale_activation import Activation
    from hw.rescale_stages import Requantizer

    w = config.widths
    lane = (Activation.dsp_blocks(min(config.buffer_bits, w.acc), w, config.residual)
            + Requantizer.dsp_blocks(w.value, w.recip))
    return {"lane": lane, "total": lane * config.rescale_lanes}


def _write_manifest(out_dir, manifest):
    write_text(Path(out_dir) / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return manifest


def _header(config, name, path):
    return {"format": MANIFEST_FORMAT, "generator": f"asqgen {__version__}", "top": name,
            "verilog": path.name, "config": config.as_dict()}


def generate_accelerator(config, out_dir, *, bundle=None, name="asq_accel"):
    """Write the layer engine (``hw.accelerator``) of ``config`` and its manifest into
    ``out_dir``; with ``bundle``, the manifest lists its layers and their passes' shapes."""
    path, port_list = write_verilog(Accelerator(config=config), out_dir, name, clocked=True)
    manifest = _header(config, name, path)
    manifest["derived"] = {"acc_bits": config.acc_bits, "buffer_bits": config.buffer_bits,
                           "table_frac_bits": config.table_frac_bits,
                           "latency": config.latency,
                           "rescale_widths": config.widths.as_dict(),
                           "rescale_dsp_blocks": rescale_dsp_blocks(config)}
    manifest["rescale_registers"] = regmap.manifest(config.index_bits)
    if bundle is not None:
        manifest["layers"] = [{"name": l.name, "kind": l.kind, "k": l.k,
                               "n": l.out_channels, "w_format": l.w_format,
                               "w_bits": l.w_bits, "out_shape": list(l.out_shape)}
                              for l in bundle.layers]
    manifest["ports"] = port_list
    return _write_manifest(out_dir, manifest)


def _activation_payload(config):
    """The manifest's words for ``i_a``'s payload."""
    if not config.signed_acts:
        return (f"rows x a_bits activation codes (row k in bits "
                f"[k*{config.a_bits}, (k+1)*{config.a_bits})), then 1 bit last")
    w = config.a_bits + 1
    return (f"rows x (a_bits + 1) signed activations in sign-magnitude (row k in bits "
            f"[k*{w}, (k+1)*{w}): the magnitude |code| in the low {config.a_bits} bits, then "
            f"1 bit neg), then 1 bit last")


def generate_array(config, out_dir, *, name="asq_array"):
    """Write ``name.v`` and ``manifest.json`` for ``config`` into ``out_dir``; return the
    manifest (a dict)."""
    top = SystolicArray(config=config)
    path, port_list = write_verilog(top, out_dir, name, clocked=True)
    fmt = config.product_format
    manifest = {
        **_header(config, name, path),
        "derived": {
            "magnitude_bits": config.magnitude_bits,
            "psum_bits": [config.psum_bits(r) for r in range(config.rows)],
            "table_frac_bits": config.table_frac_bits,
            "table": fmt.table,
            "sums": 2 if config.split else 1,
            "latency": config.latency,
            "tile": {"max_k": config.rows, "max_n": config.cols},
        },
        "streams": {
            "i_w": {"payload": f"cols x w_bits: weight row k of the tile, column c in bits "
                               f"[c*{config.w_bits}, (c+1)*{config.w_bits})"},
            "i_a": {"payload": _activation_payload(config)},
            "o_r": {"payload": f"cols x acc_bits signed accumulators (column n in bits "
                               f"[n*{config.acc_bits}, (n+1)*{config.acc_bits}))" +
                               (", then the odd sums likewise" if config.split else "") +
                               ", then 1 bit last"},
        },
        "ports": port_list,
    }
    return _write_manifest(out_dir, manifest)


def generate_multiplier(fmt, out_dir, *, name="asq_multiplier"):
    """Write a lone multiplier of ``numerics.ProductFormat`` ``fmt`` (for its exhaustive test)."""
    mul = StandaloneMultiplier(fmt=fmt)
    path, _ = write_verilog(mul, out_dir, name, clocked=False)
    return path
