"""The ``hgq-rewrite`` command line: quantize, explain, finetune, export, report, demo.

Every error is printed as one line on stderr (``hgq-rewrite: error: ...``)
with exit code 2; ``--debug`` shows the traceback instead. A failed
bit-exactness check exits with code 1. Data files are ``.npz`` archives with
the inputs under ``x`` (or ``x0``, ``x1``, ... for several inputs) and the
targets under ``y``.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from .args import NPZ_HELP, nonneg_float, positive_float, positive_int, steps_per_execution
from .io import CLIError, one_line

PROG = "hgq-rewrite"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors."""

    def error(self, message):
        raise CLIError(f"{self.prog}: {message} (see '{self.prog} --help')")


def build_parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks and library logs")

    parser = _Parser(
        prog=PROG,
        parents=[common],
        description="Rewrite float Keras models into HGQ models, fine-tune them, and export them bit-exactly "
        "to hls4ml.",
        epilog=f"Data files: {NPZ_HELP}. Errors exit with code 2, a failed bit-exactness check with 1.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("quantize", parents=[common], help="rewrite a float .keras model into an HGQ model",
                       description="Rewrite a float .keras model into an HGQ model (weights carried over).")
    p.add_argument("model", metavar="IN.keras", help="float Keras model")
    p.add_argument("-o", "--output", required=True, metavar="OUT.keras", help="where to save the HGQ model")
    p.add_argument("--config", metavar="CFG.yaml", help="rewrite config (YAML or JSON; see docs/config.md)")
    p.add_argument("--beta", type=nonneg_float, help="default EBOPs penalty of every HGQ layer")
    p.add_argument("--lenient", action="store_true", help="only warn about config keys that match no layer")

    p = sub.add_parser("explain", parents=[common], help="show what quantize would do, layer by layer",
                       description="Print the rewrite plan: per layer the decision, and which rule set each setting.")
    p.add_argument("model", metavar="IN.keras", help="float Keras model")
    p.add_argument("--config", metavar="CFG.yaml", help="rewrite config (YAML or JSON)")
    p.add_argument("--beta", type=nonneg_float, help="default EBOPs penalty of every HGQ layer")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")

    p = sub.add_parser("finetune", parents=[common], help="fine-tune an HGQ model, keep the Pareto front",
                       description="Fine-tune an HGQ model against its EBOPs penalty. Every epoch on the "
                       "accuracy-vs-EBOPs Pareto front is saved in OUT_DIR, with front.json, history.json "
                       "and last.keras (the model after the last epoch).")
    p.add_argument("model", metavar="Q.keras", help="HGQ model (from 'hgq-rewrite quantize')")
    p.add_argument("--data", required=True, metavar="TRAIN.npz", help=f"training data ({NPZ_HELP})")
    p.add_argument("--val", metavar="VAL.npz", help="validation data (same layout); the front then uses it")
    p.add_argument("--epochs", required=True, type=positive_int, help="number of epochs")
    p.add_argument("--beta", metavar="SCHEDULE",
                   help="beta for every HGQ layer: a number, or linear:START:END[:E0[:E1]] or "
                   "log:START:END[:E0[:E1]] (default: keep each layer's beta)")
    p.add_argument("--target-ebops", type=positive_float, metavar="N",
                   help="EBOPs budget: beta is controlled each epoch from log(EBOPs/N) after a short warm-up "
                   "(not with --beta); the best front member at or under N is reported")
    p.add_argument("--beta-max", type=positive_float, metavar="B",
                   help="with --target-ebops: the largest beta the controller may use (default 1e-2)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="batch size (default 32)")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate if the model is not compiled")
    p.add_argument("--lr-decay", choices=("cosine", "none"), default="cosine",
                   help="learning-rate decay over the run if the model is not compiled: cosine to a tenth of "
                   "--lr (default), or none (constant)")
    p.add_argument("--shrink", choices=("auto", "none"), default="auto",
                   help="auto (default): halve a trained MLP's kernels and biases before its first fine-tune of "
                   "15 or more epochs (a warm start; not for models with a convolution); none: start from the "
                   "weights as they are")
    p.add_argument("--xla", choices=("auto", "on", "off"), default="auto",
                   help="compile the train step with XLA if the model is not compiled: auto (default) for runs of "
                   "5,000 steps or more, where it pays back its seconds of compiling; on; off")
    p.add_argument("--steps-per-execution", type=steps_per_execution, default="auto", metavar="auto|N",
                   help="training steps per call of the train function if the model is not compiled: auto "
                   "(default) 16, at most an epoch's; N (1: one call per step, as Keras by default)")
    p.add_argument("--metric", help="metric of the Pareto front (default val_accuracy / accuracy / loss)")
    p.add_argument("-o", "--output", required=True, metavar="OUT_DIR",
                   help="folder for the front's models (new or empty; see --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="OUT_DIR holds an earlier finetune run: delete that run's files first (files finetune "
                   "did not write are never deleted; the command refuses instead)")

    p = sub.add_parser("export", parents=[common], help="trace, make the proxy, write + compile the hls4ml project",
                       description="Trace exact formats on calibration data, build the proxy model, write and "
                       "compile the hls4ml project, and compare proxy and C simulation bit for bit.")
    p.add_argument("model", metavar="Q.keras", help="HGQ model")
    p.add_argument("--calib", required=True, metavar="DATA.npz", help=f"calibration data ({NPZ_HELP})")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (proxy.keras, hls4ml_prj/)")
    p.add_argument("--backend", choices=("Vivado", "Vitis"), default="Vitis", help="hls4ml backend (default Vitis)")
    p.add_argument("--part", help="FPGA part (default: the backend's)")
    p.add_argument("--cover-factor", type=positive_float, default=1.0,
                   help="widen traced ranges by this factor (head-room against overflow; default 1)")
    p.add_argument("--check-samples", type=positive_int, default=2000,
                   help="samples of the calibration data compared bit for bit (default 2000)")
    p.add_argument("--no-compile", action="store_true", help="only write the project (no g++, no check)")
    p.add_argument("--strategy", choices=("latency", "da"), default="latency",
                   help="hls4ml strategy for Dense/Conv: latency, or da (da4ml distributed arithmetic; needs the "
                   "[da] extra)")
    p.add_argument("--format", choices=("hls4ml", "qonnx", "verilog"), default="hls4ml",
                   help="hls4ml project (default), qonnx (model.onnx; [qonnx] extra) or verilog (da4ml; [da] extra)")

    p = sub.add_parser("report", parents=[common], help="per-layer bitwidths and EBOPs, with plots",
                       description="Per-layer table (weight and activation bits: mean/min/max, pruned share, "
                       "EBOPs share) and PNG plots. Given a finetune folder, also the Pareto front.")
    p.add_argument("model", metavar="Q.keras|FINETUNE_DIR",
                   help="HGQ model, or a finetune folder (its best front member is reported)")
    p.add_argument("--calib", metavar="DATA.npz", help="trace exact bitwidths on this data first")
    p.add_argument("--pareto", metavar="FINETUNE_DIR", help="finetune folder whose Pareto front is plotted")
    p.add_argument("--plots", metavar="DIR", help="folder for the PNG files (default: next to the model)")
    p.add_argument("--no-plots", action="store_true", help="print the table only")

    p = sub.add_parser("demo", parents=[common], help="the whole flow on scikit-learn's digits",
                       description="Train a float MLP on scikit-learn's digits, quantize it, fine-tune it, "
                       "export it to hls4ml and check bit-exactness, printing the figures.")
    p.add_argument("--quick", action="store_true", help="a few epochs on a subset (for tests)")
    p.add_argument("--no-hls", action="store_true", help="skip the hls4ml compile and bit-exactness check")
    p.add_argument("--out", metavar="DIR", help="keep the models and the hls4ml project here (default: temporary)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")

    from ..sweep.cli import add_sweep_parser  # the sweep subcommand lives with the sweep

    add_sweep_parser(sub, common)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"{PROG}: warning: {one_line(message)}", file=sys.stderr)


def main(argv=None):
    """Run the command line; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        from . import commands

        run = getattr(commands, f"cmd_{args.command}")
        with warnings.catch_warnings():
            if not debug:
                warnings.showwarning = _show_warning
                warnings.filterwarnings("ignore", category=DeprecationWarning)
                warnings.filterwarnings("ignore", category=FutureWarning)
            code = run(args)
        return int(code or 0)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    except Exception as e:  # noqa: BLE001 - the one place errors become a line and an exit code
        if debug:
            raise
        msg = str(e) if isinstance(e, CLIError) else _describe(e)
        print(f"{PROG}: error: {one_line(msg)}", file=sys.stderr)
        return 2


def _describe(exc):
    text = str(exc) or type(exc).__name__
    if isinstance(exc, (ValueError, TypeError, KeyError, FileNotFoundError, RuntimeError, ArithmeticError)):
        return text.strip("'\"") if isinstance(exc, KeyError) else text
    return f"{type(exc).__name__}: {text} (run with --debug for the traceback)"


__all__ = ["main", "build_parser", "CLIError"]
