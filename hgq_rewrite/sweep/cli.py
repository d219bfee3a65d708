"""``hgq-rewrite sweep``: the command line of `hgq_rewrite.sweep.sweep`."""

from __future__ import annotations

import io
import os

from ..cli.args import NPZ_HELP, positive_float, positive_int


def add_sweep_parser(sub, common):
    """Add the ``sweep`` subcommand to the ``hgq-rewrite`` parser's subparsers."""
    p = sub.add_parser(
        "sweep", parents=[common], help="many finetune trials on Ray, one merged Pareto front",
        description="Run one finetune per combination of --beta, --seed, --init and --lr, in parallel on Ray "
        "(local by default, --address joins a cluster), and merge the trials' Pareto fronts into OUT_DIR "
        "(front.json, front.png, members/*.keras). Running it again on OUT_DIR resumes: finished trials are "
        "skipped. Needs Ray: pip install 'hgq_rewrite[sweep]'.")
    p.add_argument("model", metavar="MODEL.keras", help="float model (quantized per trial) or HGQ model")
    p.add_argument("--data", required=True, metavar="TRAIN.npz", help=f"training data ({NPZ_HELP})")
    p.add_argument("--val", metavar="VAL.npz", help="validation data (same layout); the fronts then use it")
    p.add_argument("--epochs", required=True, type=positive_int, help="epochs of every trial")
    p.add_argument("-o", "--output", required=True, metavar="OUT_DIR",
                   help="sweep folder (new, empty, or an earlier sweep to resume)")
    p.add_argument("--beta", nargs="+", metavar="BETA",
                   help="betas to try: numbers or schedules (log:START:END...); default: keep the model's")
    p.add_argument("--seed", nargs="+", type=int, default=[0], metavar="SEED", help="seeds to try (default 0)")
    p.add_argument("--init", nargs="+", default=["none"], metavar="POLICY",
                   help="bit-width init policies: none (configured init_bw), a tolerance such as 0.1 (init_bits "
                   "on the training data), or bw:N (init_bw N; float model only). Default none")
    p.add_argument("--lr", nargs="+", type=positive_float, default=[1e-3], metavar="LR",
                   help="learning rates to try (default 1e-3)")
    p.add_argument("--target-ebops", nargs="+", type=positive_float, metavar="N",
                   help="EBOPs budgets to try (beta is then controlled; not with --beta)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="batch size (default 32)")
    p.add_argument("--metric", help="metric of the fronts (default val_accuracy / accuracy / loss)")
    p.add_argument("--config", metavar="CFG.yaml", help="rewrite config for a float model (YAML or JSON)")
    p.add_argument("--cpus-per-trial", type=positive_float, default=1.0, help="CPUs each trial declares (default 1)")
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs each trial declares (default 0)")
    p.add_argument("--max-parallel", type=positive_int, help="at most this many trials at once")
    p.add_argument("--address", help="join this Ray cluster ('auto', 'ray://host:10001'); default: a local Ray")
    p.add_argument("--num-cpus", type=positive_int, help="CPUs of the local Ray (default: all)")
    p.add_argument("--overwrite", action="store_true", help="OUT_DIR holds a different sweep: delete it first")
    return p


def cmd_sweep(args):
    from ..cli.io import CLIError, load_keras, load_training_data
    from ..inputs import pack
    from .api import sweep

    model = load_keras(args.model, "model")
    xs, y, val = load_training_data(model, args.data, args.val)
    if args.gpus_per_trial < 0:
        raise CLIError(f"--gpus-per-trial must be >= 0, got {args.gpus_per_trial}.")
    betas = None
    if args.beta:
        betas = []
        for text in args.beta:
            try:
                betas.append(float(text))
            except ValueError:
                betas.append(text)  # a schedule; the grid check says if it is malformed
    grid = {"beta": betas if betas else [None], "seed": args.seed, "init": args.init, "learning_rate": args.lr,
            "target_ebops": args.target_ebops or [None]}
    result = sweep(
        model, pack(xs), y, grid=grid, epochs=args.epochs, directory=args.output, validation_data=val,
        batch_size=args.batch_size, metric=args.metric, config=args.config, cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial, max_parallel=args.max_parallel, address=args.address,
        num_cpus=args.num_cpus, overwrite=args.overwrite, verbose=1,
    )
    print(format_members(result), end="")
    return 1 if result.failed and not result.front else 0


def format_members(result, width=110):
    """The merged front as a text table (fewest EBOPs first)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"merged Pareto front ({result.metric} vs EBOPs)")
    for col in ("trial", "params", "epoch", result.metric or "metric", "EBOPs", "file"):
        table.add_column(col, justify="left" if col in ("trial", "params", "file") else "right")
    for m in result.front:
        params = " ".join(f"{k}={v}" for k, v in m.params.items())
        path = os.path.relpath(m.path, result.directory) if m.path else "-"
        table.add_row(m.trial, params, str(m.epoch + 1), f"{m.metric:.4f}", f"{m.ebops:,.0f}", path)
    buf = io.StringIO()
    Console(file=buf, width=width, force_terminal=False, color_system=None).print(table)
    return buf.getvalue()
