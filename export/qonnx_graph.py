"""Reading a QONNX file for ``asqgen import``: the file checked, cleaned up and executed.

``read(path)`` loads the ``.onnx`` file and its external data (``onnx``), checks what a bad file
gets wrong (not ONNX or truncated, a missing or short external data file, a node of a custom
domain asqgen does not map, dynamic shapes), then runs the clean-up that the FINN and hls4ml
front ends run first (``qonnx.util.cleanup.cleanup_model``: shape inference, constant folding
that keeps ``Quant`` nodes, unique node and tensor names), shape inference and datatype
inference. ``IntQuant`` (the newer name of ``Quant``, the same op) is renamed ``Quant`` first,
since the clean-up would fold an ``IntQuant`` of constant weights into float weights; each
node's name in the file is kept in its ``doc_string`` for the messages (the clean-up renames
every node). ``execute(model, images, names)`` is qonnx's own execution of the cleaned model
(``qonnx.core.onnx_exec.execute_onnx``) on a batch, returning the tensors asked for.

Every problem is a ``core.errors.ModelError`` of one line naming the file (and the node);
``onnx``, ``onnxruntime`` or ``qonnx`` missing is a ``ToolError`` naming the extra to install.
Neither needs PyTorch.
"""

from pathlib import Path

import numpy as np

from core.errors import ModelError, ToolError

__all__ = ["QUANT_OPS", "load", "read", "execute", "node_name"]

QUANT_OPS = ("Quant", "IntQuant")       # the two spellings of QONNX's integer quantizer
_CUSTOM_DOMAINS = ("qonnx.custom_op.general", "onnx.brevitas", "finn.custom_op.general")
_MAX_BYTES = 1 << 30


def _modules():
    """``onnx`` and the qonnx pieces, imported here so that a missing package is one line."""
    try:
        import onnx
        import onnx.external_data_helper as external
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.core.onnx_exec import execute_onnx
        from qonnx.transformation.change_batchsize import ChangeBatchSize
        from qonnx.transformation.infer_datatypes import InferDataTypes
        from qonnx.transformation.infer_shapes import InferShapes
        from qonnx.util.cleanup import cleanup_model
    except ImportError as e:
        raise ToolError(f"asqgen import needs onnx, onnxruntime and qonnx ({e.name} is not "
                        f"installed): pip install '.[onnx]' (./dev test installs them)") from None
    return dict(onnx=onnx, external=external, ModelWrapper=ModelWrapper,
                execute_onnx=execute_onnx, ChangeBatchSize=ChangeBatchSize,
                InferDataTypes=InferDataTypes, InferShapes=InferShapes,
                cleanup_model=cleanup_model)


_ORIGINAL = "asqgen: the node's name in the file: "


def node_name(node):
    """``node``'s name as a message gives it: ``'Conv_0' (Conv)``, and the name it has in the
    file when the clean-up renamed it: ``'Conv_0' (Conv, '/1/Conv' in the file)``."""
    name = node.name or node.output[0]
    original = (node.doc_string[len(_ORIGINAL):] if node.doc_string.startswith(_ORIGINAL)
                else name)
    return f"{name!r} ({node.op_type}" + (f", {original!r} in the file)" if original != name
                                          else ")")


def _first_line(e):
    text = str(e).strip().split("\n")[0] or type(e).__name__
    return text[:200]


def _load(path, m):
    """The ``ModelProto`` of ``path`` with its external data, every problem one line."""
    onnx = m["onnx"]
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ModelError(f"{path}: no such file") from None
    except OSError as e:
        raise ModelError(f"{path}: unreadable ({e.strerror})") from None
    if not path.is_file():
        raise ModelError(f"{path}: not a file")
    if size > _MAX_BYTES:
        raise ModelError(f"{path}: {size} bytes, more than {_MAX_BYTES}")
    try:
        proto = onnx.load_model_from_string(path.read_bytes())
    except OSError as e:
        raise ModelError(f"{path}: unreadable ({e.strerror})") from None
    except Exception as e:              # protobuf's DecodeError and kin: garbage or truncated
        raise ModelError(f"{path}: not an ONNX model, or a truncated one "
                         f"({_first_line(e)})") from None
    if (proto.ir_version <= 0 or not proto.HasField("graph") or not proto.graph.node
            or not any(o.domain in ("", "ai.onnx") for o in proto.opset_import)):
        raise ModelError(f"{path}: not an ONNX model, or a truncated one (no graph, nodes or "
                         f"opset)")
    _external(path, proto, m)
    try:
        onnx.checker.check_model(proto)
    except Exception as e:              # onnx.checker.ValidationError and kin
        raise ModelError(f"{path}: not a valid ONNX model ({_first_line(e)})") from None
    return proto


def _external(path, proto, m):
    """Check and load the external data files that ``proto``'s tensors name."""
    external = m["external"]
    folder = path.parent.resolve()
    for tensor in external._get_all_tensors(proto):
        if not external.uses_external_data(tensor):
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        target = (folder / location).resolve()
        if not location or folder not in target.parents:
            raise ModelError(f"{path}: tensor {tensor.name!r} names the external data file "
                             f"{location!r}, which is not beside the model")
        if not target.is_file():
            raise ModelError(f"{path}: the external data file {location!r} of tensor "
                             f"{tensor.name!r} is missing (it must be beside the .onnx file)")
        try:
            offset, length = int(info.get("offset", 0)), info.get("length")
        except ValueError:
            raise ModelError(f"{path}: tensor {tensor.name!r} has a bad external data "
                             f"offset") from None
        if length is not None and offset + int(length) > target.stat().st_size:
            raise ModelError(f"{path}: the external data file {location!r} is shorter than "
                             f"tensor {tensor.name!r} needs (truncated)")
    try:
        external.load_external_data_for_model(proto, str(folder))
    except Exception as e:
        raise ModelError(f"{path}: its external data cannot be read ({_first_line(e)})") from None


def _names(proto):
    """Every name and string of ``proto``'s graph that the import reads."""
    g = proto.graph
    for node in g.node:
        yield from (node.name, node.op_type, node.domain, *node.input, *node.output)
        yield from (a.name for a in node.attribute)
    for value in (*g.input, *g.output, *g.value_info, *g.initializer):
        yield value.name
    for o in proto.opset_import:
        yield o.domain


def _check_graph(path, proto):
    """Names that are text, nodes of a foreign custom domain, and dynamic shapes, before qonnx
    sees the graph."""
    if not all(isinstance(n, str) for n in _names(proto)):
        raise ModelError(f"{path}: not a valid ONNX model (a name is not UTF-8 text: a corrupt "
                         f"file)")
    for node in proto.graph.node:
        if node.domain not in ("", "ai.onnx") and node.op_type not in QUANT_OPS:
            raise ModelError(f"{path}: node {node_name(node)} of domain {node.domain!r} is not "
                             f"supported (asqgen maps Quant and IntQuant of the QONNX ops)")
        if node.op_type in QUANT_OPS and node.domain not in _CUSTOM_DOMAINS:
            raise ModelError(f"{path}: node {node_name(node)} has the domain "
                             f"{node.domain!r}, not QONNX's")
    inits = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in inits]
    if len(inputs) != 1 or len(proto.graph.output) != 1:
        raise ModelError(f"{path}: the model has {len(inputs)} inputs and "
                         f"{len(proto.graph.output)} outputs; asqgen maps one of each")
    for value in (inputs[0], proto.graph.output[0]):
        t = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        if not t.HasField("shape") or not dims or any(d is None or d <= 0 for d in dims):
            shown = [d.dim_param or "?" if not d.HasField("dim_value") else d.dim_value
                     for d in t.shape.dim]
            raise ModelError(f"{path}: {value.name!r} has dynamic shapes ({shown}): export the "
                             f"model with a fixed input shape (batch 1)")
        if t.elem_type != 1:
            raise ModelError(f"{path}: {value.name!r} is not float32")


def load(path):
    """The ``ModelProto`` of the QONNX file ``path`` as written (before the clean-up), checked
    as ``read`` checks it."""
    m = _modules()
    path = Path(path)
    proto = _load(path, m)
    _check_graph(path, proto)
    return proto


def read(path, proto=None):
    """The cleaned ``qonnx`` ``ModelWrapper`` of the QONNX file ``path`` (module docstring),
    from its ``load``-ed ``proto`` if given."""
    m = _modules()
    path = Path(path)
    if proto is None:
        proto = load(path)
    for node in proto.graph.node:       # one op, two names; cleanup_model keeps only "Quant"
        if node.op_type == "IntQuant":  # (it would fold an IntQuant of the weights away)
            node.op_type = "Quant"
        if node.name:                   # the clean-up renames every node: keep the file's name
            node.doc_string = _ORIGINAL + node.name
    try:
        model = m["cleanup_model"](m["ModelWrapper"](proto))
        model = model.transform(m["InferShapes"]())
        model = model.transform(m["InferDataTypes"]())
    except Exception as e:              # qonnx's passes raise anything on a malformed graph
        raise ModelError(f"{path}: qonnx's clean-up failed ({type(e).__name__}: "
                         f"{_first_line(e)})") from None
    for node in model.graph.node:
        for name in node.output:
            shape = model.get_tensor_shape(name)
            if shape is None or any(not isinstance(d, int) or d <= 0 for d in shape):
                raise ModelError(f"{path}: node {node_name(node)}: its output {name!r} has "
                                 f"dynamic or unknown shapes ({shape}) after shape inference")
    return model


def execute(model, images, names):
    """qonnx's execution of ``model`` on ``images`` (a batch): the tensors ``names``, each with
    the batch first."""
    m = _modules()
    try:
        batch = model.transform(m["ChangeBatchSize"](len(images)))
        batch = batch.transform(m["InferShapes"]())
        name = batch.graph.input[0].name
        context = m["execute_onnx"](batch,
                                    {name: np.ascontiguousarray(images, dtype=np.float32)},
                                    return_full_exec_context=True)
    except Exception as e:              # onnxruntime and qonnx's ops raise anything
        raise ModelError(f"qonnx cannot execute the model ({type(e).__name__}: "
                         f"{_first_line(e)})") from None
    return {n: np.asarray(context[n]) for n in names}
