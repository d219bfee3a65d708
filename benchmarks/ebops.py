"""One EBOPs measure for the firmware of either library, read off the hls4ml model.

Both libraries end in the same place: an hls4ml ``ModelGraph`` converted with hls4ml's
bit-exact flow (our proxy model, or the HGQ2 model directly). That flow's ``bit_exact``
pass derives, with interval arithmetic, the exact per-element fixed-point format
``(k, i, f)`` every layer produces (after the quantizers have been shrunk to what their
inputs can actually carry). We record those formats while the pass runs and define

    EBOPs = sum over every multiply the firmware instantiates of
            b_act * b_w,  with
            b_act = k + i + f  (clipped at 0) of the activation element entering the multiply,
                    as hls4ml derived it for the layer feeding the Dense/Conv;
            b_w   = significant bits of the weight constant: the span from its most to its
                    least significant set bit of |w| (0.75 -> 2, 4.0 -> 1, 0 -> 0).

Dense: ``sum(b_act @ b_w)``; EinsumDense: the same einsum on bit maps; Conv1D/Conv2D:
the bit maps are padded/strided/unfolded like the data, and every output position counts
(fully parallel, one multiplier per kernel tap per position); BatchNormalization:
``sum(b_act * b_scale)``. Biases, additions, pooling and quantizers cost nothing here.

The numbers depend only on the exported firmware, not on either library's own EBOPs
bookkeeping, so they compare like with like. They are close to, but not the same as, what
each library reports: HGQ2 counts activation bits without the sign bit for WRAP and adds
a bias term; our ``trace_minmax`` counts the quantizer's own format before hls4ml shrinks it.
"""

from contextlib import contextmanager

import numpy as np


def significant_bits(w):
    """Span of significant bits of each |w| (exact for float64 values)."""
    a = np.abs(np.asarray(w, dtype=np.float64))
    out = np.zeros(a.shape, dtype=np.int64)
    nz = a > 0
    mant, _ = np.frexp(a[nz])  # a = mant * 2**e, mant in [0.5, 1)
    ints = (mant * 2.0**53).astype(np.int64)  # exact 53-bit integer mantissa, top bit set
    lowest = ints & -ints  # lowest set bit
    out[nz] = 53 - np.log2(lowest).astype(np.int64)
    return out


def _act_bits(kif):
    k, i, f = (np.asarray(v, dtype=np.int64) for v in kif)
    return np.maximum(k + i + f, 0).astype(np.float64)


def _linear_classes():
    from hls4ml.model import layers as hl

    return (hl.Dense, hl.EinsumDense, hl.Conv1D, hl.Conv2D, hl.BatchNormalization)


def layer_ebops(node, input_kif):
    """EBOPs of one hls4ml layer given the per-element format of its input (None if no multiplies)."""
    from hls4ml.model import layers as hl
    from hls4ml.model.optimizer.passes import bit_exact as be

    b_in = _act_bits(input_kif)
    if isinstance(node, (hl.DepthwiseConv1D, hl.DepthwiseConv2D)):
        raise NotImplementedError(f"EBOPs of depthwise convolutions ({node.name}) are not implemented")
    if isinstance(node, hl.EinsumDense):
        b_w = significant_bits(node.attributes["weight"].data).astype(np.float64)
        return float(np.sum(np.einsum(node.attributes["equation"], b_in, b_w)))
    if isinstance(node, hl.Dense):
        b_w = significant_bits(node.attributes["weight"].data).astype(np.float64)
        return float(np.sum(b_in.reshape(-1, b_w.shape[0]) @ b_w))
    if isinstance(node, (hl.Conv1D, hl.Conv2D)):
        kernel = node.attributes["weight"].data
        b_w = significant_bits(kernel).astype(np.float64)
        (b,) = be.pad_arrs(node, 0, b_in)
        (b,) = be.im2col(kernel.shape, b)
        (b,) = be.stride_arrs(node, b)
        return float(np.sum(b @ b_w.reshape(-1, kernel.shape[-1])))
    if isinstance(node, hl.BatchNormalization):
        b_s = significant_bits(node.attributes["scale"].data).astype(np.float64)
        return float(np.sum(b_in.reshape(-1, b_s.size) * b_s.reshape(1, -1)))
    return None


@contextmanager
def record_ebops():
    """While active, every hls4ml conversion records ``{layer name: EBOPs}`` into the yielded dict.

    Works by observing the per-layer formats that hls4ml's ``bit_exact`` pass computes
    (it is wrapped, not changed: the pass sees the same return values).
    """
    from hls4ml.model.optimizer.passes import bit_exact as be

    store = {}
    linear = _linear_classes()
    original = be.produce_kif

    def observed(layer, force_reset=False):
        result = original(layer, force_reset)
        if force_reset and isinstance(layer, linear):
            inputs = be.get_input_layers(layer)
            if len(inputs) == 1:
                value = layer_ebops(layer, original(inputs[0]))
                if value is not None:
                    store[layer.name] = value
        return result

    be.produce_kif = observed
    try:
        yield store
    finally:
        be.produce_kif = original


def convert_with_ebops(keras_model, output_dir, backend="Vitis", io_type="io_parallel", **kwargs):
    """hls4ml conversion of ``keras_model``; returns ``(hls_model, total EBOPs, per-layer dict)``."""
    import hls4ml

    with record_ebops() as per_layer:
        hls_model = hls4ml.converters.convert_from_keras_model(
            keras_model, output_dir=output_dir, backend=backend, io_type=io_type, **kwargs
        )
    if not per_layer:
        raise RuntimeError("hls4ml's bit-exact pass did not run: the model has no fixed-point quantizers")
    return hls_model, float(sum(per_layer.values())), dict(per_layer)
