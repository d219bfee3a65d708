"""`export_project`: trace, build the proxy, write (and compile and check) the firmware project.

The library side of ``hgq-rewrite export`` and of the demo's last step.
"""

import os
import time

from ..files import save_model
from ..formats import warn_wide_formats
from ..inputs import pack
from ..proxy.bit_exact import check_bit_exact, convert_proxy
from ..proxy.convert import to_proxy_model
from ..trace import trace_minmax
from .cli_routes import export_format, strategy_kwargs


def export_project(qmodel, xs, out_dir, *, backend="Vitis", part=None, cover_factor=1.0, check_samples=2000,
                   compile=True, check_data=None, log=print, strategy="latency", fmt="hls4ml"):
    """Trace, build the proxy, write (and compile + check) the hls4ml project; return the figures as a dict.

    Args:
        qmodel: the HGQ model (traced here on ``xs``).
        xs: the list of calibration input arrays.
        out_dir: the proxy goes to ``out_dir/proxy.keras``, the hls4ml project to ``out_dir/hls4ml_prj``.
        backend, part: hls4ml backend (``Vitis`` or ``Vivado``) and FPGA part (None: the backend's).
        cover_factor: passed to ``trace_minmax``.
        check_samples: the bit-exactness check runs on the first ``check_samples`` of ``check_data``.
        compile: compile the project and check it; False only writes it.
        check_data: a list of arrays for the check (default: ``xs``).
        log: called with one line per step.
        strategy: ``latency``, or ``da`` (every Dense/Conv with da4ml, hls4ml's ``distributed_arithmetic``).
        fmt: ``hls4ml``; ``qonnx`` writes ``model.onnx`` and ``verilog`` da4ml's Verilog instead.

    Returns:
        ``{"ebops", "proxy", "project", "backend"}`` and, after a check, ``samples``, ``mismatches``,
        ``seconds``, ``hls_output``, ``proxy_output``.
    """
    os.makedirs(out_dir, exist_ok=True)
    t0 = time.perf_counter()
    ebops = trace_minmax(qmodel, pack(xs), cover_factor=cover_factor)
    log(f"traced {len(xs[0])} calibration samples (cover factor {cover_factor:g}): {ebops:,.0f} EBOPs")
    warn_wide_formats(qmodel)
    proxy = to_proxy_model(qmodel, overflow="WRAP")
    proxy_path = os.path.join(out_dir, "proxy.keras")
    save_model(proxy, proxy_path)
    log(f"proxy model: {len(proxy.layers)} layers -> {proxy_path}")
    prj = os.path.join(out_dir, "hls4ml_prj")
    figures = {"ebops": ebops, "proxy": proxy_path, "project": prj, "backend": backend}
    check_data = xs if check_data is None else check_data
    if fmt != "hls4ml":
        figures.update(export_format(fmt, proxy, out_dir, check_data, check_samples, compile, log))
        return figures
    kwargs = {"part": part} if part else {}
    kwargs.update(strategy_kwargs(strategy))
    if not compile:
        hls = convert_proxy(proxy, backend=backend, output_dir=prj, io_type="io_parallel", **kwargs)
        hls.write()
        log(f"hls4ml project ({backend}, io_parallel) written to {prj} (not compiled)")
        return figures
    n = min(check_samples, len(check_data[0]))
    rep = check_bit_exact(proxy, pack([a[:n] for a in check_data]), backend=backend, output_dir=prj, strict=False,
                          **kwargs)
    for note in rep.notes:
        log(f"note: {note}")
    log(f"hls4ml project ({backend}, io_parallel) written and compiled in {prj} "
        f"(convert {rep.convert_seconds:.1f} s, compile {rep.compile_seconds:.1f} s)")
    log(f"bit-exactness self-check: {rep.n_samples} samples compared, {rep.n_mismatching} mismatches"
        + (f" (max |diff| {rep.max_abs_diff:g}, first samples {rep.mismatching_samples[:5].tolist()})"
           if rep.n_mismatching else ""))
    figures.update(samples=rep.n_samples, mismatches=rep.n_mismatching, seconds=time.perf_counter() - t0,
                   hls_output=rep.hls_output, proxy_output=rep.proxy_output)
    return figures
