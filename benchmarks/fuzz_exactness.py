"""Randomized exactness check: HGQ model == proxy == hls4ml C simulation, bit for bit.

Every case draws a float Keras model from one of the model families below, trains it briefly,
rewrites it with ``hgq_rewrite.quantize`` under a random config (granularity, rounding, initial
bits, beta), fine-tunes it with ``ResetMinMax``, traces it on N(0, 1) calibration data and builds
the proxy (``aggressive`` True or False). It then compares, sample by sample,

* the traced HGQ model against the proxy (no compiler needed), and
* the proxy against hls4ml 1.3's C simulation (Vivado, io_parallel; needs g++),

on test inputs of which half look like the calibration data and half are scaled 1-30x beyond it.
The cases cycle through every rounding x overflow x granularity combination.

    python benchmarks/fuzz_exactness.py --cases 36 --samples 3000          # ~100k samples
    python benchmarks/fuzz_exactness.py --cases 12 --no-compile            # HGQ vs proxy only

Writes a JSON record of every case (``--out``) and prints one line per case and the totals.
"""

import argparse
import itertools
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
from keras import layers as L  # noqa: E402

ROUNDINGS = ("RND", "TRN", "RND_CONV")
AGGRESSIVE = (True, False)
GRANULARITIES = ("element", "channel", "tensor")
LUT_ACTIVATIONS = ("tanh", "sigmoid", "softplus", "softsign", "elu", "selu", "silu", "gelu", "hard_sigmoid",
                   "relu6", "leaky_relu", "mish", "exponential")


# --------------------------------------------------------------------------------------------------
# Model families: each takes a numpy Generator and returns an (unbuilt-weights) float keras.Model.

def mlp_lut(rng):
    """Dense(tanh) -> Dense -> Activation(sigmoid) -> Dense: in-layer and stand-alone LUTs."""
    x = L.Input((10,))
    h = L.Dense(int(rng.integers(4, 9)), activation="tanh")(x)
    h = L.Dense(int(rng.integers(3, 7)))(h)
    h = L.Activation("sigmoid")(h)
    return keras.Model(x, L.Dense(3)(h), name="mlp_lut")


def activation_zoo(rng):
    """Two random element-wise activations (tables) and a ReLU layer."""
    a, b = rng.choice(LUT_ACTIVATIONS, size=2, replace=False)
    x = L.Input((6,))
    h = L.Dense(5)(x)
    h = L.Activation(str(a))(h)
    h = L.Dense(4)(h)
    h = L.ReLU()(h)
    h = L.Dense(4)(h)
    h = L.Activation(str(b))(h)
    return keras.Model(x, L.Dense(2)(h), name=f"zoo_{a}_{b}")


def two_inputs_two_outputs(rng):
    """Two inputs, Concatenate, two heads (one with a sigmoid)."""
    a, b = L.Input((6,)), L.Input((5,))
    h = L.Concatenate()([L.Dense(5, activation="relu")(a), L.Dense(4, activation="relu")(b)])
    return keras.Model([a, b], [L.Dense(2)(h), L.Dense(1, activation="sigmoid")(h)], name="two_in_two_out")


def depthwise_bn_gap(rng):
    """DepthwiseConv2D -> 1x1 Conv2D -> BatchNorm -> relu -> GlobalAveragePooling2D over 36 positions."""
    x = L.Input((8, 8, 2))
    h = L.DepthwiseConv2D(3, activation="relu")(x)  # depth_multiplier > 1: refused by quantize (hls4ml 1.3)
    h = L.Conv2D(4, 1)(h)
    h = L.BatchNormalization()(h)
    h = L.Activation("relu")(h)
    h = L.GlobalAveragePooling2D()(h)
    return keras.Model(x, L.Dense(3)(h), name="depthwise_bn_gap")


def conv1d_add_avgpool(rng):
    """Two Conv1D branches -> Add -> AveragePooling1D(4) -> Flatten -> Dense."""
    x = L.Input((16, 4))
    h = L.Add()([L.Conv1D(4, 3, padding="same", activation="relu")(x), L.Conv1D(4, 1)(x)])
    h = L.AveragePooling1D(4)(h)
    return keras.Model(x, L.Dense(3)(L.Flatten()(h)), name="conv1d_add_avgpool")


def avgpool_odd_sizes(rng):
    """Average pooling over 3 and global average pooling over 5 positions (not powers of 2)."""
    x = L.Input((15, 3))
    h = L.Conv1D(4, 1, activation="relu")(x)
    h = L.AveragePooling1D(3)(h)
    h = L.GlobalAveragePooling1D()(h)
    return keras.Model(x, L.Dense(2)(h), name="avgpool_odd_sizes")


def pool2d_mix(rng):
    """Conv2D, MaxPooling2D, AveragePooling2D(3x3 window), GlobalAveragePooling2D(keepdims) over 3x3."""
    x = L.Input((11, 11, 1))
    h = L.Conv2D(3, 3, activation="relu")(x)  # 9x9
    h = L.MaxPooling2D(1)(h) if rng.random() < 0.5 else h
    h = L.AveragePooling2D(3)(h)  # 3x3
    h = L.GlobalAveragePooling2D(keepdims=True)(h)
    return keras.Model(x, L.Dense(2)(L.Flatten()(h)), name="pool2d_mix")


def conv2d_maxpool(rng):
    """The seed's shape: Conv2D + MaxPooling2D twice, Flatten, Dense."""
    x = L.Input((10, 10, 1))
    h = L.Conv2D(3, 3, activation="relu")(x)
    h = L.MaxPooling2D(2)(h)
    h = L.Conv2D(4, 2, padding="same", strides=2)(h)
    return keras.Model(x, L.Dense(3)(L.Flatten()(h)), name="conv2d_maxpool")


def strided_conv1d_permute(rng):
    """Strided Conv1D, Permute, Reshape, Dropout."""
    x = L.Input((20, 3))
    h = L.Conv1D(4, 3, strides=2, activation="relu")(x)
    h = L.Permute((2, 1))(h)
    h = L.Reshape((-1,))(h)
    h = L.Dropout(0.1)(h)
    return keras.Model(x, L.Dense(4)(h), name="strided_conv1d_permute")


def deep_narrow_bn(rng):
    """Deep narrow MLP, Dense -> BatchNorm -> relu blocks."""
    x = L.Input((8,))
    h = x
    for _ in range(int(rng.integers(3, 6))):
        h = L.Dense(int(rng.integers(4, 9)))(h)
        h = L.BatchNormalization()(h)
        h = L.Activation("relu")(h)
    return keras.Model(x, L.Dense(2)(h), name="deep_narrow_bn")


def merges(rng):
    """A three-way Add and a three-way Concatenate."""
    x = L.Input((7,))
    branches = [L.Dense(4, activation="relu" if j else None)(x) for j in range(3)]
    s = L.Add()(branches)
    c = L.Concatenate()([s, *branches[:2]])
    return keras.Model(x, L.Dense(3)(c), name="merges")


def nested(rng):
    """A Sequential block used inside a functional model, with a residual Add."""
    block = keras.Sequential([L.Input((6,)), L.Dense(6, activation="relu"), L.Dense(6)], name="block")
    x = L.Input((6,))
    h = L.Dense(6)(x)
    h = L.Add()([h, block(h)])
    h = L.Activation("tanh")(h)
    return keras.Model(x, L.Dense(2)(h), name="nested")


def conv2d_bn_same(rng):
    """Conv2D(same, stride 2) + BatchNorm + relu, Conv2D + relu, Flatten, Dense."""
    x = L.Input((8, 8, 2))
    h = L.Conv2D(4, 3, strides=2, padding="same")(x)
    h = L.BatchNormalization()(h)
    h = L.ReLU()(h)
    h = L.Conv2D(3, 2, activation="relu")(h)
    return keras.Model(x, L.Dense(2)(L.Flatten()(h)), name="conv2d_bn_same")


FAMILIES = {
    f.__name__: f
    for f in (
        mlp_lut, activation_zoo, two_inputs_two_outputs, depthwise_bn_gap, conv1d_add_avgpool, avgpool_odd_sizes,
        pool2d_mix, conv2d_maxpool, strided_conv1d_permute, deep_narrow_bn, merges, nested, conv2d_bn_same,
    )
}


# --------------------------------------------------------------------------------------------------


def _inputs(model, n, rng, far=False):
    """N(0, 1) inputs; with ``far`` half of them scaled by 1..30 (per sample)."""
    xs = []
    for t in model.inputs:
        x = rng.normal(0.0, 1.0, (n, *t.shape[1:]))
        if far:
            scale = np.ones(n)
            scale[n // 2:] = rng.uniform(1.0, 30.0, n - n // 2)
            x = x * scale.reshape(-1, *([1] * (x.ndim - 1)))
        xs.append(x.astype("float32"))
    return xs if len(xs) > 1 else xs[0]


def _targets(model, n, rng):
    ys = [rng.normal(0.0, 1.0, (n, *t.shape[1:])).astype("float32") for t in model.outputs]
    return ys if len(ys) > 1 else ys[0]


def _flat(y):
    return [np.asarray(v, dtype=np.float64).reshape(len(v), -1) for v in keras.tree.flatten(y)]


def mismatched_samples(a, b):
    """Number of samples where any output element differs."""
    bad = None
    for u, v in zip(_flat(a), _flat(b)):
        diff = np.any(u != v, axis=1)
        bad = diff if bad is None else (bad | diff)
    return int(np.sum(bad))


def combos():
    """Every rounding x aggressive x granularity combination, in a fixed order."""
    return list(itertools.product(ROUNDINGS, AGGRESSIVE, GRANULARITIES))


def build_case(family, seed, rounding, aggressive, granularity, n_train=256, epochs=2):
    """Float model -> quantize -> short fine-tune -> trace -> proxy. Returns (qmodel, proxy, info, rng)."""
    import hgq_rewrite as hr

    rng = np.random.default_rng(seed)
    keras.utils.set_random_seed(seed)
    float_model = FAMILIES[family](rng)
    x, y = _inputs(float_model, n_train, rng), _targets(float_model, n_train, rng)
    float_model.compile("adam", "mse")
    float_model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    beta = float(10 ** rng.uniform(-7, -4))
    config = {
        "defaults": {
            "kernel": {"granularity": granularity, "rounding": rounding, "init_bw": int(rng.integers(2, 6))},
            "output": {"rounding": rounding, "init_bw": int(rng.integers(3, 8))},
        }
    }
    qmodel = hr.quantize(float_model, config, beta=beta)
    qmodel.compile(keras.optimizers.Adam(3e-3), "mse")
    qmodel.fit(x, y, epochs=epochs, batch_size=64, verbose=0, callbacks=[hr.ResetMinMax()])
    calib = _inputs(float_model, n_train, rng)
    hr.trace_minmax(qmodel, calib, cover_factor=1.0, aggressive=aggressive)
    proxy = hr.to_proxy_model(qmodel)  # the overflow mode of trace_minmax
    info = dict(family=family, seed=seed, rounding=rounding, aggressive=aggressive, granularity=granularity,
                beta=beta, config=config)
    return qmodel, proxy, info, rng


def run_case(family, seed, rounding, aggressive, granularity, n_samples, compile_hls=True, keep_dir=None,
             n_train=256, epochs=2, qonnx=False):
    """One fuzz case; returns its record (mismatch counts, or the error that stopped it)."""
    from hgq_rewrite.proxy import check_bit_exact, predict_float64

    t0 = time.time()
    qmodel, proxy, info, rng = build_case(family, seed, rounding, aggressive, granularity, n_train, epochs)
    x = _inputs(qmodel, n_samples, rng, far=True)
    y_proxy = predict_float64(proxy, x)
    y_hgq = qmodel.predict(x, verbose=0, batch_size=1024)
    info.update(samples=n_samples, hgq_vs_proxy=mismatched_samples(y_hgq, y_proxy))
    if qonnx:  # the QONNX model (exact form) run by qonnx's execute_onnx
        from hgq_rewrite.export import check_qonnx

        try:
            info["proxy_vs_qonnx"] = int(check_qonnx(proxy, x).n_mismatching)
        except Exception as exc:
            info.update(proxy_vs_qonnx=None, qonnx_error=f"{type(exc).__name__}: {str(exc)[:300]}")
    if compile_hls:
        out_dir = tempfile.mkdtemp(prefix=f"fuzz_{family}_", dir=keep_dir)
        try:
            report = check_bit_exact(proxy, x, backend="Vivado", output_dir=out_dir)
            info.update(proxy_vs_hls=int(report.n_mismatching), compiled=True)
        except Exception as exc:  # a failed compile is a finding, reported not raised
            info.update(proxy_vs_hls=None, compiled=False, error=f"{type(exc).__name__}: {str(exc)[:300]}")
        finally:
            if keep_dir is None:
                shutil.rmtree(out_dir, ignore_errors=True)
    info["seconds"] = round(time.time() - t0, 1)
    return info


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=len(FAMILIES) * 3)
    parser.add_argument("--samples", type=int, default=3000, help="test samples per case")
    parser.add_argument("--families", nargs="*", default=sorted(FAMILIES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-compile", action="store_true", help="HGQ vs proxy only (no hls4ml / g++)")
    parser.add_argument("--qonnx", action="store_true", help="also export to QONNX and run it with execute_onnx")
    parser.add_argument("--out", default=None, help="JSON file for the per-case records")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.families) - set(FAMILIES))
    if unknown:
        parser.error(f"unknown families {unknown}; choose from {sorted(FAMILIES)}")

    start, records, all_combos = time.time(), [], combos()
    for n in range(args.cases):
        family = args.families[n % len(args.families)]
        rounding, aggressive, granularity = all_combos[n % len(all_combos)]
        rec = run_case(family, args.seed * 1000 + n, rounding, aggressive, granularity, args.samples,
                       compile_hls=not args.no_compile, qonnx=args.qonnx)
        records.append(rec)
        hls = "-" if args.no_compile else (rec["proxy_vs_hls"] if rec.get("compiled") else "COMPILE FAILED")
        print(f"[{n + 1:3d}/{args.cases}] {family:24s} {rounding:8s} aggressive={str(aggressive):5s} "
              f"{granularity:8s} hgq!=proxy {rec['hgq_vs_proxy']:5d}  proxy!=hls {hls}  ({rec['seconds']} s)"
              + (f"  proxy!=qonnx {rec['proxy_vs_qonnx']}" if "proxy_vs_qonnx" in rec else "")
              + (f"  {rec['error']}" if rec.get("error") else "")
              + (f"  {rec['qonnx_error']}" if rec.get("qonnx_error") else ""), flush=True)
        if args.out:
            _write(args.out, records, args, time.time() - start)
    summary = _summary(records, time.time() - start)
    print(json.dumps(summary, indent=1))
    if args.out:
        _write(args.out, records, args, time.time() - start)
    bad = ("hgq_vs_proxy_mismatches", "hls_mismatches", "failed_compiles", "qonnx_mismatches", "qonnx_failures")
    return 1 if any(summary[key] for key in bad) else 0


def _summary(records, seconds):
    compiled = [r for r in records if r.get("compiled")]
    return dict(
        models=len(records),
        samples=sum(r["samples"] for r in records),
        hgq_vs_proxy_mismatches=sum(r["hgq_vs_proxy"] for r in records),
        compiled_models=len(compiled),
        hls_samples=sum(r["samples"] for r in compiled),
        hls_mismatches=sum(r["proxy_vs_hls"] for r in compiled),
        failed_compiles=sum(1 for r in records if r.get("compiled") is False),
        qonnx_models=sum(1 for r in records if r.get("proxy_vs_qonnx") is not None),
        qonnx_mismatches=sum(r.get("proxy_vs_qonnx") or 0 for r in records),
        qonnx_failures=sum(1 for r in records if "qonnx_error" in r),
        wall_seconds=round(seconds, 1),
    )


def _write(path, records, args, seconds):
    data = dict(command="python benchmarks/fuzz_exactness.py " + " ".join(sys.argv[1:]),
                summary=_summary(records, seconds), cases=records)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=1, default=str)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
