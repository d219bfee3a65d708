"""finetune: train an HGQ model against its EBOPs penalty and keep the accuracy-vs-EBOPs Pareto front.

`finetune` compiles the model if needed, wires `FreeBOPs` / `ResetMinMax`
(and a `BetaScheduler` for the beta schedule), shows a `rich` progress bar and
returns ``(history, front)``. The front is kept by the `ParetoFront` callback:
after every epoch the (metric, EBOPs) point is compared with the points kept so
far; a point no other point beats on both is kept (saved as ``.keras`` in the
folder the user names), and the points it beats are dropped (their files
deleted). ``front.json`` and ``history.json`` in that folder describe the run
(`hgq-rewrite report --pareto DIR` plots them). Every file is written to a
temporary file in the folder and renamed into place once complete.

`finetune` checks every argument before it touches the model, refuses a folder
holding an earlier run unless ``overwrite=True``, stops with `NonFiniteLossError`
when the loss turns NaN or inf, and on any failure puts the model's weights and
compile state back as they were.
"""

from .api import finetune
from .front import Front, FrontEntry, auto_metric, choose_member, dominates, metric_mode
from .loss import check_targets, default_compile
from .pareto import ParetoFront
from .progress import RichProgress
from .store import FRONT_FILE, HISTORY_FILE, check_run_dir, load_front

__all__ = [
    "finetune",
    "ParetoFront",
    "Front",
    "FrontEntry",
    "FRONT_FILE",
    "HISTORY_FILE",
    "auto_metric",
    "check_run_dir",
    "check_targets",
    "choose_member",
    "default_compile",
    "dominates",
    "load_front",
    "metric_mode",
    "RichProgress",
]
