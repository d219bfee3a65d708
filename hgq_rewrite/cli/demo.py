"""``hgq-rewrite demo``: the whole flow on scikit-learn's digits, printing the figures.

float MLP (64-32-16-10, BatchNorm) → quantize → finetune (log beta ramp, Pareto front)
→ pick a front member → trace_minmax → proxy → hls4ml (Vitis, io_parallel) compile
→ bit-exactness check of the C simulation against the proxy on the test set.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import numpy as np


def digits_data(seed=0):
    """scikit-learn's 8x8 digits (shipped with the package, nothing downloads), split 60/20/20."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.data / 16.0).astype("float32")
    y = d.target.astype("int64")
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    a, b = int(0.6 * len(x)), int(0.8 * len(x))
    return (x[:a], y[:a]), (x[a:b], y[a:b]), (x[b:], y[b:])


def float_model():
    import keras

    return keras.Sequential(
        [
            keras.Input((64,), name="pixels"),
            keras.layers.Dense(32, name="dense1"),
            keras.layers.BatchNormalization(name="bn1"),
            keras.layers.Activation("relu", name="relu1"),
            keras.layers.Dense(16, activation="relu", name="dense2"),
            keras.layers.Dense(10, name="logits"),
        ],
        name="digits_mlp",
    )


def pick(front, tolerance=0.02):
    """The front member with the fewest EBOPs whose metric is within ``tolerance`` of the best."""
    best = max(e.metric for e in front)
    return min((e for e in front if e.metric >= best - tolerance), key=lambda e: e.ebops)


def accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, batch_size=1024, verbose=0), axis=-1) == y))


def run_demo(quick=False, hls=True, out=None, seed=0, log=print):
    """Run the demo; return its figures as a dict (also printed through ``log``)."""
    import keras

    import hgq_rewrite as hr

    from ..finetune import finetune
    from ..schedules import Log
    from ..export.project import export_project

    t_start = time.perf_counter()
    keras.utils.set_random_seed(seed)
    tmp = None
    if out is None:
        tmp = out = tempfile.mkdtemp(prefix="hgq_demo_")
    os.makedirs(out, exist_ok=True)
    try:
        (x, y), (xv, yv), (xt, yt) = digits_data(seed)
        if quick:
            x, y = x[:256], y[:256]
        float_epochs, ft_epochs = (2, 3) if quick else (40, 60)
        log(f"data: scikit-learn digits, {len(x)} train / {len(xv)} validation / {len(xt)} test samples of 8x8 pixels")

        # 1. float model
        t0 = time.perf_counter()
        fmodel = float_model()
        fmodel.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                       metrics=["accuracy"])
        fmodel.fit(x, y, epochs=float_epochs, batch_size=32, verbose=0)
        float_acc = accuracy(fmodel, xt, yt)
        log(f"[1/5] float model {fmodel.name!r} ({fmodel.count_params()} parameters) trained {float_epochs} epochs "
            f"in {time.perf_counter() - t0:.0f} s: test accuracy {float_acc:.4f}")

        # 2. quantize
        plan = hr.explain(fmodel, beta=1e-7)
        qmodel = hr.quantize(fmodel, beta=1e-7)
        n_conv, n_fold = len(plan.by_decision("convert")), len(plan.by_decision("fold")) + len(plan.by_decision("fuse"))
        log(f"[2/5] quantize: {n_conv} layers converted, {n_fold} folded/fused, "
            f"{len(plan.by_decision('insert'))} input quantizer(s) inserted -> "
            + ", ".join(type(layer).__name__ for layer in qmodel.layers))

        # 3. finetune with a log beta ramp, keeping the Pareto front
        t0 = time.perf_counter()
        schedule = Log(1e-7, 3e-5, 0, max(ft_epochs - 10, 1)) if not quick else "log:1e-7:1e-5"
        pareto_dir = os.path.join(out, "pareto")
        _, front = finetune(qmodel, x, y, validation_data=(xv, yv), epochs=ft_epochs, beta=schedule,
                            batch_size=32, learning_rate=3e-3, pareto_dir=pareto_dir, calibration_data=x,
                            verbose=2 if quick else 1, overwrite=True)  # the demo's own folder: a rerun replaces it
        chosen = pick(front)
        log(f"[3/5] finetune: {ft_epochs} epochs, beta {schedule}, in {time.perf_counter() - t0:.0f} s; "
            f"Pareto front (exact EBOPs on the training set): {len(front)} epochs, saved in {pareto_dir}"
            + (" (temporary: --out DIR keeps it)" if tmp is not None else ""))
        for e in front:
            mark = "  <- chosen" if e is chosen else ""
            log(f"        epoch {e.epoch + 1:>3}: val_accuracy {e.metric:.4f}  EBOPs {e.ebops:>9,.0f}{mark}")

        # 4. exact formats
        chosen.restore(qmodel)  # the chosen epoch's weights back into the trained model
        ebops = hr.trace_minmax(qmodel, x)
        hgq_acc = accuracy(qmodel, xt, yt)
        log(f"[4/5] trace_minmax on the training set: {ebops:,.0f} EBOPs; HGQ test accuracy {hgq_acc:.4f}")

        result = {"float_accuracy": float_acc, "hgq_accuracy": hgq_acc, "ebops": ebops, "front": len(front)}
        from ..export._deps import available

        if available("da"):  # da4ml's LUT estimate beside EBOPs (optional extra [da])
            from ..report import da4ml_estimate

            est, note = da4ml_estimate(qmodel)
            if est is not None:
                result["luts"] = est.total
                log(f"        da4ml estimate: {est.total:,.0f} LUTs (LUT/EBOPs {est.total / max(ebops, 1):.2f})")
            else:
                log(f"        {note}")
        # 5. proxy + hls4ml + bit-exactness
        if hls:
            fig = export_project(qmodel, [x], os.path.join(out, "export"), check_data=[xt], log=lambda m: log(f"        {m}"))
            hls_acc = float(np.mean(np.argmax(fig["hls_output"], axis=-1) == yt[: fig["samples"]]))
            proxy_acc = float(np.mean(np.argmax(fig["proxy_output"], axis=-1) == yt[: fig["samples"]]))
            result.update(samples=fig["samples"], mismatches=fig["mismatches"], firmware_accuracy=hls_acc,
                          proxy_accuracy=proxy_acc)
            log(f"[5/5] export: proxy test accuracy {proxy_acc:.4f}, firmware (C simulation) test accuracy "
                f"{hls_acc:.4f}; bit-exact: {fig['samples']} samples compared, {fig['mismatches']} mismatches")
            if proxy_acc != hgq_acc:
                log("        (proxy and firmware wrap where test values leave the ranges traced on the training set; "
                    "the HGQ model does not: trace_minmax's cover_factor > 1 leaves head-room)")
        else:
            log("[5/5] export skipped (--no-hls)")
        result["seconds"] = time.perf_counter() - t_start
        log(f"done in {result['seconds']:.0f} s: float {float_acc:.4f} -> HGQ {hgq_acc:.4f} test accuracy "
            f"at {ebops:,.0f} EBOPs" + (f" (~{result['luts']:,.0f} LUTs, da4ml)" if "luts" in result else "")
            + (f"; firmware bit-exact: {'yes' if not result['mismatches'] else 'NO'}" if hls else ""))
        return result
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
