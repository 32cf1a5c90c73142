"""The whole-network golden model: its convolution against a direct one, its input checks, and
its agreement with PyTorch's fake-quantized model (which it must follow closely, not exactly)."""

import numpy as np
import pytest
import torch
from torch import nn

from export.layers import quantized_conv2d, quantized_linear
from export.to_bundle import export_bundle, torch_trace
from core.rescale import Z
from sim.golden import im2col, layer_accumulators, run_network

from .bundles import random_bundle


def test_conv_accumulators_equal_a_direct_convolution():
    bundle = random_bundle(1)
    layer = bundle.layers[0]                       # int8 weights: the product is exact
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (2, 1, 8, 8))
    w = np.where(layer.weight >= 128, layer.weight - 256, layer.weight)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    direct = np.zeros((2, layer.out_channels, 8, 8), dtype=np.int64)
    for i in range(8):
        for j in range(8):
            direct[:, :, i, j] = np.einsum("nchw,ochw->no", xp[:, :, i:i + 3, j:j + 3], w)
    assert np.array_equal(layer_accumulators(layer, x), direct)


def test_im2col_with_stride():
    x = np.arange(2 * 3 * 5 * 5).reshape(2, 3, 5, 5)
    cols = im2col(x, 3, 2, 1)
    assert cols.shape == (2 * 3 * 3, 27)
    # Output (0, 1, 1) reads the window centred on input (2, 2): rows 1..3, columns 1..3.
    assert cols[1 * 3 + 1].reshape(3, 3, 3).tolist() == x[0, :, 1:4, 1:4].tolist()


def test_input_checks():
    bundle = random_bundle()
    with pytest.raises(ValueError, match=r"^input codes holds the code 256, outside the 8-bit "):
        run_network(bundle, np.full((1, 1, 8, 8), 256))
    with pytest.raises(ValueError, match=r"^input codes have shape \(1, 4, 4\), the bundle takes "
                                         r"\(1, 8, 8\)$"):
        run_network(bundle, np.zeros((1, 1, 4, 4), int))


def test_trace_shapes_and_beta():
    bundle = random_bundle()
    trace = run_network(bundle, bundle.reference["codes"])
    assert [t.codes.shape for t in trace.layers[:-1]] == [(3, 4, 8, 8), (3, 8, 4, 4)]
    assert trace.layers[-1].acc.shape == (3, 5) and trace.logits.shape == (3, 5)
    assert trace.layers[0].beta.shape == (3,) and (trace.layers[0].beta > 0).all()
    assert trace.layers[1].codes.max() <= 255 and trace.layers[0].codes.max() <= 15


def _model(weights="post", acts="asq", bits=4):
    torch.manual_seed(0)
    return nn.Sequential(
        quantized_conv2d(1, 8, 3, padding=1, bias=False, weight_method="lsq", act_method="lsq",
                         bits=8), nn.BatchNorm2d(8), nn.ReLU(),
        quantized_conv2d(8, 16, 3, padding=1, bias=False, weight_method=weights,
                         act_method=acts, bits=bits), nn.BatchNorm2d(16), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(), quantized_linear(256, 10, weight_method="lsq", act_method="lsq", bits=8))


@pytest.mark.parametrize("weights, acts, bits", [("post", "asq", 4), ("pot", "lsq", 3),
                                                 ("lsq", "asq", 3)])
def test_agrees_with_pytorch(weights, acts, bits):
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images[:400, None] / 16.0, dtype=torch.float32)
    model = _model(weights, acts, bits).train()
    with torch.no_grad():
        for _ in range(3):                          # initialise quantizers and BN statistics
            model(x[:200])
    bundle = export_bundle(model, input_shape=(1, 8, 8))
    ref = torch_trace(model, x)
    codes = bundle.quantize_input(x.numpy())
    assert np.array_equal(codes, ref["codes"][0])
    trace = run_network(bundle, codes)
    for i, layer in enumerate(trace.layers[:-1]):
        theirs = ref["codes"][i + 1].reshape(layer.codes.shape)
        assert (theirs == layer.codes).mean() > 0.995
        assert np.abs(theirs - layer.codes).max() <= 1
    ours = trace.logits * 2.0 ** -Z
    assert (ours.argmax(1) == ref["logits"].argmax(1)).mean() >= 0.99
    assert np.abs(ours - ref["logits"]).max() < 0.25


def test_vector_adapter_after_a_conv_reads_raw_values():
    """ASQ on the input of a linear layer that follows a conv (conv -> flatten -> linear): the
    adapter reads the flattened vector itself, so its fixed-point weights must not be divided
    by the conv's output positions (they were: golden and PyTorch then agreed on about half
    of the codes). The hardware refuses this adapter; the golden model runs it."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images[:300, None] / 16.0, dtype=torch.float32)
    torch.manual_seed(1)
    model = nn.Sequential(
        quantized_conv2d(1, 4, 3, padding=1, bias=False, weight_method="lsq", act_method="lsq",
                         bits=8), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        quantized_linear(64, 16, weight_method="post", act_method="asq", bits=4), nn.ReLU(),
        quantized_linear(16, 10, weight_method="lsq", act_method="lsq", bits=8)).train()
    with torch.no_grad():
        for _ in range(3):
            model(x)
        adapter = model[5].act_quantizer.adapter           # an adapter that matters
        adapter.hidden.weight.normal_(0, 0.3)
        adapter.output.weight.normal_(0, 0.3)
    bundle = export_bundle(model, input_shape=(1, 8, 8))
    assert bundle.layers[0].adapter.input == "vector" and bundle.layers[0].conv_shape[1:] == \
        (8, 8)
    ref = torch_trace(model, x)
    trace = run_network(bundle, bundle.quantize_input(x.numpy()))
    for i, layer in enumerate(trace.layers[:-1]):
        theirs = ref["codes"][i + 1].reshape(layer.codes.shape)
        assert (theirs == layer.codes).mean() > 0.99, bundle.layers[i + 1].name
    ours = trace.logits * 2.0 ** -Z
    assert (ours.argmax(1) == ref["logits"].argmax(1)).mean() >= 0.99
    assert np.abs(ours - ref["logits"]).max() < 0.25
