"""Training, export and measurement steps shared by the benchmark sections.

Every step returns plain dicts (JSON-ready). Errors inside one library's step are caught
and recorded (``"error": "..."``) so a failure on one side never hides the other side's
numbers.
"""

import contextlib
import io
import os
import shutil
import statistics
import tempfile
import time
import traceback
import warnings

import keras
import numpy as np

from ebops import convert_with_ebops, record_ebops
from models import float_model, hgq2_model, hgq_rewrite_config, transfer_to_hgq2


class EpochTimer(keras.callbacks.Callback):
    """Wall time of every epoch of a fit (``times``)."""

    def __init__(self):
        super().__init__()
        self.times = []
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def median_epoch(times):
    """Median epoch time, leaving out the first epoch (graph tracing) when there are more."""
    times = list(times)
    return statistics.median(times[1:] if len(times) > 1 else times)


def _loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def error_record(exc):
    return {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=6)}


def accuracy(model, x, y):
    logits = model.predict(x, batch_size=2048, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == y))


# -- float --------------------------------------------------------------------------------------
def train_float(task, data, epochs, batch_size, lr, seed):
    x, y, xt, yt = data
    keras.utils.set_random_seed(seed)
    model = float_model(task)
    model.compile(keras.optimizers.Adam(lr), _loss(), metrics=["accuracy"])
    timer = EpochTimer()
    model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, callbacks=[timer])
    return model, {"test_accuracy": accuracy(model, xt, yt), "epoch_times": timer.times,
                   "median_epoch_s": median_epoch(timer.times), "params": int(model.count_params())}


# -- hgq_rewrite ---------------------------------------------------------------------------------
def ours_available():
    """(finetune, to_proxy_model) of our library; None for the pieces not there yet."""
    try:
        from hgq_rewrite.finetune import finetune
    except ImportError:
        finetune = None
    try:
        from hgq_rewrite.proxy.convert import to_proxy_model
    except ImportError:
        to_proxy_model = None
    return finetune, to_proxy_model


def train_ours(task, float_m, data, beta, epochs, batch_size, lr, seed, target=None):
    """The rewrite flow: ``quantize(trained float, calibration_data=x)`` + ``finetune``.

    ``target=None``: a fixed ``beta``, the model at the end of training. ``target=N``:
    ``finetune(target_ebops=N)`` controls beta, and the front member it chooses is restored.
    """
    import hgq_rewrite as hr

    x, y, xt, yt = data
    keras.utils.set_random_seed(seed)
    t0 = time.perf_counter()
    qmodel = hr.quantize(float_m, beta=beta, config=hgq_rewrite_config(task), calibration_data=x)
    t_quantize = time.perf_counter() - t0
    timer = EpochTimer()
    goal = {} if target is None else {"target_ebops": target, "calibration_data": x}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an unreached target is recorded below
        hist, front = hr.finetune(qmodel, x, y, epochs=epochs, batch_size=batch_size, learning_rate=lr, verbose=0,
                                  callbacks=[timer], **goal)
    out = {"trainer": "hgq_rewrite.finetune", "quantize_s": t_quantize, "epoch_times": timer.times,
           "median_epoch_s": median_epoch(timer.times),
           "bops_history": [float(v) for v in hist.history.get("bops", [])]}
    if target is not None:
        out.update({"target_ebops": float(target), "reached": bool(front.reached), "message": front.message,
                    "beta_history": [float(v) for v in hist.history.get("beta", [])]})
        if front.reached:
            front.chosen.restore(qmodel)
            out["chosen_epoch"] = int(front.chosen.epoch)
    t0 = time.perf_counter()
    out["own_ebops"] = float(hr.trace_minmax(qmodel, x))
    out["trace_minmax_s"] = time.perf_counter() - t0
    out["test_accuracy"] = accuracy(qmodel, xt, yt)
    return qmodel, out


def export_ours(qmodel, x_test, y_test, compile_hls, workdir):
    """to_proxy_model, hls4ml conversion (unified EBOPs) and optionally the bit-exact check."""
    _, to_proxy_model = ours_available()
    if to_proxy_model is None:
        return {"error": "hgq_rewrite.proxy.convert.to_proxy_model is not available yet"}
    out = {}
    t0 = time.perf_counter()
    proxy = to_proxy_model(qmodel, aggressive=True)
    out["to_proxy_model_s"] = time.perf_counter() - t0
    out["proxy_test_accuracy"] = accuracy(proxy, x_test.astype(np.float64), y_test)
    if compile_hls:
        from hgq_rewrite.proxy.bit_exact import check_bit_exact

        with record_ebops() as per_layer, _quiet():
            report = check_bit_exact(proxy, x_test, output_dir=os.path.join(workdir, "ours"))
        out.update(_report_fields(report, y_test))
    else:
        with _quiet():
            t0 = time.perf_counter()
            _, _, per_layer = convert_with_ebops(proxy, os.path.join(workdir, "ours"))
            out["convert_s"] = time.perf_counter() - t0
    out["ebops"] = float(sum(per_layer.values()))
    out["ebops_per_layer"] = per_layer
    return out


def _report_fields(report, y_test):
    return {"n_samples": report.n_samples, "mismatching_samples": report.n_mismatching,
            "max_abs_diff": report.max_abs_diff, "convert_s": report.convert_seconds,
            "compile_s": report.compile_seconds, "hls_predict_s": report.predict_seconds,
            "hls_test_accuracy": float(np.mean(np.argmax(report.hls_output, axis=1) == y_test))}


# -- HGQ2 ----------------------------------------------------------------------------------------
def train_hgq2(task, float_m, data, beta, epochs, batch_size, lr, seed):
    """Hand-built HGQ2 twin, plain ``fit`` with ``FreeEBOPs``: from the float weights, or from
    scratch (its own initialisation) when ``float_m`` is None."""
    from hgq.utils import trace_minmax
    from hgq.utils.sugar import FreeEBOPs

    x, y, xt, yt = data
    keras.utils.set_random_seed(seed)
    model = hgq2_model(task, beta)
    if float_m is not None:
        transfer_to_hgq2(float_m, model)
    model.compile(keras.optimizers.Adam(lr), _loss(), metrics=["accuracy"])
    timer = EpochTimer()
    model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, callbacks=[timer, FreeEBOPs()])
    t0 = time.perf_counter()
    own_ebops = float(trace_minmax(model, x, batch_size=16384))
    t_trace = time.perf_counter() - t0
    return model, {"trainer": "fit + FreeEBOPs", "start": "float weights" if float_m is not None else "scratch",
                   "own_ebops": own_ebops, "test_accuracy": accuracy(model, xt, yt),
                   "epoch_times": timer.times, "median_epoch_s": median_epoch(timer.times),
                   "trace_minmax_s": t_trace}


def export_hgq2(model, x_test, y_test, compile_hls, workdir):
    """HGQ2 goes to hls4ml directly; compare ``model.predict`` with hls4ml's C simulation."""
    out = {}
    outdir = os.path.join(workdir, "hgq2")
    t0 = time.perf_counter()
    with _quiet():
        hls_model, total, per_layer = convert_with_ebops(model, outdir)
    out["convert_s"] = time.perf_counter() - t0
    out["ebops"], out["ebops_per_layer"] = total, per_layer
    if compile_hls:
        t0 = time.perf_counter()
        with _quiet():
            hls_model.compile()
        out["compile_s"] = time.perf_counter() - t0
        x64 = np.ascontiguousarray(x_test, dtype=np.float64)
        t0 = time.perf_counter()
        y_hls = np.asarray(hls_model.predict(x64), dtype=np.float64).reshape(len(x_test), -1)
        out["hls_predict_s"] = time.perf_counter() - t0
        y_keras = np.asarray(model.predict(x_test, batch_size=2048, verbose=0), dtype=np.float64).reshape(
            len(x_test), -1)
        bad = np.any(y_keras != y_hls, axis=1)
        out.update({"n_samples": int(len(x_test)), "mismatching_samples": int(bad.sum()),
                    "max_abs_diff": float(np.max(np.abs(y_keras - y_hls))),
                    "hls_test_accuracy": float(np.mean(np.argmax(y_hls, axis=1) == y_test))})
    return out


@contextlib.contextmanager
def _quiet():
    """hls4ml prints a lot; keep it out of the benchmark log."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        yield buf


@contextlib.contextmanager
def workdir(keep=None):
    """A scratch folder for hls4ml projects (removed afterwards unless ``keep``)."""
    if keep:
        os.makedirs(keep, exist_ok=True)
        yield keep
        return
    path = tempfile.mkdtemp(prefix="hgq_bench_")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- speed ---------------------------------------------------------------------------------------
def measure_speed(task, float_m, data, beta, batch_size, rounds, lr, seed):
    """Epoch times of the float model, our HGQ model and the HGQ2 model, interleaved.

    Each model is compiled the same way (Adam, cross-entropy) and first fitted one epoch
    (graph tracing, reported separately). Then ``rounds`` times, each model fits one epoch in
    turn, so background load on the machine hits the three alike. Our model and HGQ2's use
    their libraries' standard callbacks (``FreeBOPs`` + ``ResetMinMax`` / ``FreeEBOPs``); ours trains
    with ``BitwidthAdam``, as ``finetune`` does.
    """
    import hgq_rewrite as hr
    from hgq.utils.sugar import FreeEBOPs

    x, y, _, _ = data
    keras.utils.set_random_seed(seed)
    fm = float_model(task)
    fm.set_weights(float_m.get_weights())
    ours = hr.quantize(float_m, beta=beta, config=hgq_rewrite_config(task))
    hgq2 = hgq2_model(task, beta)
    transfer_to_hgq2(float_m, hgq2)
    models = {"float": (fm, []), "ours": (ours, [hr.FreeBOPs(), hr.ResetMinMax()]), "hgq2": (hgq2, [FreeEBOPs()])}
    times = {name: [] for name in models}
    first = {}
    for name, (model, cbs) in models.items():
        opt = hr.BitwidthAdam(lr) if name == "ours" else keras.optimizers.Adam(lr)  # as finetune compiles
        model.compile(opt, _loss(), metrics=["accuracy"])
        timer = EpochTimer()
        model.fit(x, y, epochs=1, batch_size=batch_size, verbose=0, callbacks=[timer, *cbs])
        first[name] = timer.times[0]
    for r in range(rounds):
        names = list(models)
        names = names[r % 3:] + names[: r % 3]  # rotate the order every round
        for name in names:
            model, cbs = models[name]
            timer = EpochTimer()
            model.fit(x, y, epochs=1, batch_size=batch_size, verbose=0, callbacks=[timer, *cbs])
            times[name].append(timer.times[0])
    med = {name: statistics.median(t) for name, t in times.items()}
    return {"beta": beta, "rounds": rounds, "batch_size": batch_size, "steps_per_epoch": -(-len(x) // batch_size),
            "float_s": med["float"], "ours_s": med["ours"], "hgq2_s": med["hgq2"],
            "ours_over_float": med["ours"] / med["float"], "hgq2_over_float": med["hgq2"] / med["float"],
            "ours_over_hgq2": med["ours"] / med["hgq2"], "epoch_times": times, "first_epoch_s": first}
