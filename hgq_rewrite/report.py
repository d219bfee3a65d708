"""Per-layer report of an HGQ model: bitwidths, EBOPs share, and plots (matplotlib, Agg).

`layer_stats(model)` collects, for every H-layer (nested models included):
the weight bits (significant bits of each quantized weight, as counted by
EBOPs: 0 means pruned), the activation bits (k + i + f of every output
element, exact after `trace_minmax`) and the layer's EBOPs. `format_table`
prints them, `plot_bit_histograms` and `plot_pareto` draw PNG files.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

import numpy as np

from .files import save_figure
from .quantizers.hquantizer import NotTracedError
from .trace import h_layers


@dataclass
class LayerStats:
    """Bitwidths and cost of one H-layer.

    Attributes:
        name: layer name.
        class_name: layer class.
        weight_bits: bits of every weight (int array) or None for layers without weights.
        activation_bits: bits of every output element (int array) or None if never traced.
        ebops: the layer's EBOPs (exact after `trace_minmax`, else last training estimate).
    """

    name: str
    class_name: str
    weight_bits: np.ndarray | None
    activation_bits: np.ndarray | None
    ebops: float

    @property
    def n_weights(self):
        return 0 if self.weight_bits is None else int(self.weight_bits.size)

    @property
    def pruned(self):
        """Fraction of weights quantized to zero."""
        return float(np.mean(self.weight_bits == 0)) if self.n_weights else 0.0


def _weight_bits(layer):
    if not hasattr(layer, "qkernel"):
        return None
    q = layer.qkernel
    return np.asarray(layer.kq.kernel_bits(q, exact=True)).astype(np.int64).reshape(-1)


def _activation_bits(layer):
    try:
        k, i, f = layer.output_kif()
    except NotTracedError:
        return None
    bits = np.maximum(k + i + f, 0)
    shape = np.broadcast_shapes(k.shape, i.shape, f.shape)
    return np.broadcast_to(bits, shape).astype(np.int64).reshape(-1)


def is_traced(model):
    """True if every H-layer of ``model`` has recorded activation ranges."""
    return all(layer.paq.is_traced() for layer in h_layers(model))


def layer_stats(model):
    """`LayerStats` of every H-layer of ``model``, in model order."""
    return [
        LayerStats(layer.name, type(layer).__name__, _weight_bits(layer), _activation_bits(layer), layer.ebops)
        for layer in h_layers(model)
    ]


def _summary(a):
    if a is None or a.size == 0:
        return "-", "-", "-"
    return f"{a.mean():.2f}", str(int(a.min())), str(int(a.max()))


def format_table(stats, title="per-layer bitwidths", width=140, luts=None):
    """The stats as a text table: weight and activation bits (mean/min/max), pruned share, EBOPs share.

    ``luts``: optional da4ml estimate (:func:`da4ml_estimate`): adds a LUTs column beside EBOPs.
    """
    from rich.console import Console
    from rich.table import Table

    total = sum(s.ebops for s in stats)
    table = Table(title=title)
    cols = ["layer", "class", "weights", "w bits mean", "min", "max", "pruned", "act bits mean", "min", "max",
            "EBOPs", "share"]
    if luts is not None:
        cols.append("LUTs (da4ml)")
        width = max(width, 160)
    for col in cols:
        table.add_column(col, justify="left" if col in ("layer", "class") else "right")
    for s in stats:
        w = _summary(s.weight_bits)
        a = _summary(s.activation_bits)
        share = f"{100 * s.ebops / total:.1f}%" if total > 0 else "-"
        extra = [] if luts is None else [f"{luts.per_layer[s.name]:,.0f}" if s.name in luts.per_layer else "-"]
        table.add_row(s.name, s.class_name, str(s.n_weights) if s.n_weights else "-", *w,
                      f"{100 * s.pruned:.0f}%" if s.n_weights else "-", *a, f"{s.ebops:,.0f}", share, *extra)
    extra = [] if luts is None else [f"{luts.total:,.0f}"]
    table.add_row("total", "", str(sum(s.n_weights for s in stats)), "", "", "", "", "", "", "", f"{total:,.0f}",
                  "100%" if total > 0 else "-", *extra, end_section=True)
    buf = io.StringIO()
    Console(file=buf, width=width, force_terminal=False, color_system=None).print(table)
    return buf.getvalue()


DA_INSTALL_HINT = ("LUTs: not estimated (da4ml is not installed); for da4ml's LUT estimate: "
                   "pip install 'hgq_rewrite[da]'")


@dataclass
class LUTEstimate:
    """da4ml's LUT estimate of a traced HGQ model, per H-layer (see :func:`da4ml_estimate`).

    Attributes:
        total: LUTs of the whole model (da4ml's cost model; shared adders counted once).
        per_layer: LUTs per H-layer name: the proxy layers it became (the layer, its activation and
            its output quantizer), as :func:`hgq_rewrite.estimate_resources` splits them.
        latency: da4ml's latency estimate.
        estimate: the :class:`hgq_rewrite.export.da.ResourceEstimate`.
    """

    total: float
    per_layer: dict
    latency: float
    estimate: object = None


def da4ml_estimate(model, stats=None):
    """da4ml's LUT estimate of a traced HGQ ``model``, or a one-line message saying why there is none.

    Returns ``(LUTEstimate, None)``, or ``(None, message)`` when da4ml is not installed (the message
    says how to install it) or the model cannot be traced by da4ml. da4ml is imported lazily.
    """
    from .export._deps import available

    if not available("da"):
        return None, DA_INSTALL_HINT
    from .export.da import estimate_resources

    try:
        est = estimate_resources(model)
    except Exception as e:  # noqa: BLE001 - the report still prints everything else
        return None, f"LUTs: da4ml cannot estimate this model ({type(e).__name__}: {str(e).splitlines()[0]})"
    names = sorted((s.name for s in (stats if stats is not None else layer_stats(model))), key=len, reverse=True)
    per_layer = {}
    for row in est.layers:
        owner = next((n for n in names if row["name"] == n or row["name"].startswith(n + "_")), None)
        if owner is not None:
            per_layer[owner] = per_layer.get(owner, 0.0) + row["luts"]
    return LUTEstimate(float(est.luts), per_layer, float(est.latency), est), None


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_bit_histograms(stats, path, title=None):
    """One histogram panel per layer (weight bits and activation bits) saved as a PNG at ``path``."""
    plt = _pyplot()
    n = max(len(stats), 1)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.flat[len(stats):]:
        ax.set_visible(False)
    for ax, s in zip(axes.flat, stats):
        arrays = [(a, label) for a, label in ((s.weight_bits, "weights"), (s.activation_bits, "activations"))
                  if a is not None and a.size]
        if arrays:
            hi = max(int(a.max()) for a, _ in arrays)
            bins = np.arange(-0.5, hi + 1.5, 1.0)
            for a, label in arrays:
                ax.hist(a, bins=bins, alpha=0.6, label=f"{label} (mean {a.mean():.1f})")
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "not traced", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(f"{s.name} ({s.class_name})", fontsize=9)
        ax.set_xlabel("bits")
        ax.set_ylabel("count")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_figure(fig, path, dpi=90)
    plt.close(fig)
    return path


def plot_pareto(summary, path):
    """Plot every epoch (grey) and the Pareto front (line) of a finetune run's ``front.json`` summary."""
    plt = _pyplot()
    points = summary.get("points", [])
    front = summary.get("front", [])
    metric = summary.get("metric", "metric")
    fig, ax = plt.subplots(figsize=(6, 4))
    if points:
        ax.scatter([p["ebops"] for p in points], [p["metric"] for p in points], s=12, c="0.6", label="epochs")
    if front:
        ax.plot([e["ebops"] for e in front], [e["metric"] for e in front], "o-", c="C3", label="Pareto front")
    ebops = [p["ebops"] for p in points] + [e["ebops"] for e in front]
    if ebops and min(ebops) > 0 and max(ebops) / min(ebops) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("EBOPs")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_figure(fig, path, dpi=90)
    plt.close(fig)
    return path


def format_front(entries, metric, width=100):
    """The Pareto front as a text table (fewest EBOPs first)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Pareto front ({metric} vs EBOPs)")
    for col in ("epoch", metric, "EBOPs", "file"):
        table.add_column(col, justify="left" if col == "file" else "right")
    for e in entries:
        table.add_row(str(e.epoch + 1), f"{e.metric:.4f}", f"{e.ebops:,.0f}",
                      os.path.basename(e.path) if e.path else "(in memory)")
    buf = io.StringIO()
    Console(file=buf, width=width, force_terminal=False, color_system=None).print(table)
    return buf.getvalue()
