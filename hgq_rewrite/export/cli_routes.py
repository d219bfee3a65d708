"""The non-hls4ml formats of ``hgq-rewrite export`` (``--format qonnx`` / ``--format verilog``)."""

import os

import numpy as np

from ..inputs import pack

FORMATS = ("hls4ml", "qonnx", "verilog")
STRATEGIES = ("latency", "da")


def export_format(fmt, proxy, out_dir, check_data, check_samples=2000, compile=True, log=print):
    """Write ``proxy`` in ``fmt`` under ``out_dir`` and (with ``compile``) check it bit for bit; return the figures."""
    n = min(check_samples, len(check_data[0]))
    check = [np.asarray(a[:n], dtype=np.float64) for a in check_data]
    if fmt == "qonnx":
        from .qonnx import check_qonnx, to_qonnx

        path = os.path.join(out_dir, "model.onnx")
        wrapper = to_qonnx(proxy, path)
        log(f"QONNX model ({len(wrapper.graph.node)} nodes, exact overflow, float32) -> {path}")
        figures = {"qonnx": path}
        if compile:
            rep = check_qonnx(proxy, pack(check))
            log(f"bit-exactness self-check (qonnx execute_onnx vs proxy): {rep.n_samples} samples compared, "
                f"{rep.n_mismatching} mismatches")
            figures.update(samples=rep.n_samples, mismatches=rep.n_mismatching)
        return figures
    if fmt == "verilog":
        from .da import check_da, estimate_resources, write_verilog

        prj = os.path.join(out_dir, "verilog_prj")
        _, comb = write_verilog(proxy, prj)
        est = estimate_resources(proxy)
        log(f"da4ml Verilog project -> {prj}: {est.luts:,.0f} LUTs (da4ml estimate), adder depth {est.adder_depth}, "
            f"latency {est.latency:g}")
        figures = {"verilog": prj, "luts": est.luts, "adder_depth": est.adder_depth, "latency": est.latency}
        if compile:
            rep = check_da(proxy, pack(check), comb=comb, trace=est.trace)
            log(f"bit-exactness self-check (da4ml simulator vs proxy): {rep.n_samples} samples compared, "
                f"{rep.n_mismatching} mismatches")
            figures.update(samples=rep.n_samples, mismatches=rep.n_mismatching)
        return figures
    raise ValueError(f"Unknown export format {fmt!r}; choose one of {FORMATS}.")


def strategy_kwargs(strategy):
    """Extra ``convert_from_keras_model`` arguments for an hls4ml strategy name."""
    if strategy == "latency":
        return {}
    if strategy == "da":
        from ._deps import require
        from .da import da_hls_config

        require("da")
        return {"hls_config": da_hls_config()}
    raise ValueError(f"Unknown strategy {strategy!r}; choose one of {STRATEGIES}.")
