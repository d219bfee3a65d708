"""One trial, run inside its Ray worker process: load the model, quantize / init, `finetune`.

The worker trains into a temporary folder of its own machine and returns the run's files
(``front.json``, ``history.json``, the front members) as bytes: the driver alone writes the
sweep folder, so a cluster needs no shared file system, and a trial counts as finished only
once the driver has written its files and, last, its ``trial.json``.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
import time
import traceback


def _config_with_init_bw(config, bits):
    """The rewrite config with ``init_bw = bits`` for activations and kernels in its defaults."""
    if config is None:
        config = {}
    elif isinstance(config, (str, os.PathLike)):
        import yaml

        with open(config, encoding="utf-8") as f:
            config = yaml.safe_load(f) or {}
    config = copy.deepcopy(config)
    defaults = config.setdefault("defaults", {}) or {}
    config["defaults"] = defaults
    for part in ("activation", "kernel"):
        section = dict(defaults.get(part) or {})
        section["init_bw"] = bits
        defaults[part] = section
    return config


def train_trial(params, model_bytes, kind, data, settings):
    """Run one trial; return ``{"status", "seconds", "files": {name: bytes}, ...}`` (never raises).

    Args:
        params: the trial's ``beta``, ``seed``, ``init``, ``learning_rate`` and ``target_ebops``.
        model_bytes: the model as a ``.keras`` archive.
        kind: ``"float"`` (quantize it first) or ``"hgq"``.
        data: ``(xs, y, validation_data or None)``.
        settings: ``epochs``, ``batch_size``, ``metric``, ``config``, ``bitwidth_lr_scale``.
    """
    t0 = time.perf_counter()
    work = tempfile.mkdtemp(prefix="hgq-sweep-trial-")
    try:
        import keras

        from ..finetune import finetune
        from ..rewrite import quantize
        from ..rewrite.init_bits import init_bits

        keras.utils.set_random_seed(params["seed"])
        path = os.path.join(work, "model.keras")
        with open(path, "wb") as f:
            f.write(model_bytes)
        model = keras.saving.load_model(path, safe_mode=True)
        xs, y, val = data
        feed = xs if len(xs) > 1 else xs[0]
        init = params["init"]
        if kind == "float":
            config = settings.get("config")
            if isinstance(init, str):  # "bw:N"
                config = _config_with_init_bw(config, int(init.split(":")[1]))
            beta = params["beta"] if isinstance(params["beta"], float) else None
            qmodel = quantize(model, config, beta=beta,
                              calibration_data=feed if isinstance(init, float) else None,
                              init_tolerance=init if isinstance(init, float) else 0.1)
        else:
            qmodel = model
            if isinstance(init, float):
                init_bits(qmodel, feed, init)
        front_dir = os.path.join(work, "front")
        _, front = finetune(
            qmodel, feed, y, validation_data=val, epochs=settings["epochs"], beta=params["beta"],
            target_ebops=params.get("target_ebops"),
            batch_size=settings["batch_size"], pareto_dir=front_dir, metric=settings.get("metric"),
            learning_rate=params["learning_rate"], bitwidth_lr_scale=settings["bitwidth_lr_scale"], verbose=0,
        )
        files = {}
        for name in sorted(os.listdir(front_dir)):
            with open(os.path.join(front_dir, name), "rb") as f:
                files[name] = f.read()
        return {"status": "done", "seconds": time.perf_counter() - t0, "files": files,
                "pid": os.getpid(), "front_size": len(front)}
    except BaseException as e:  # reported by the driver; the sweep goes on with the other trials
        return {"status": "failed", "seconds": time.perf_counter() - t0, "files": {}, "pid": os.getpid(),
                "error": f"{type(e).__name__}: {e}".strip(), "traceback": traceback.format_exc()}
    finally:
        shutil.rmtree(work, ignore_errors=True)
