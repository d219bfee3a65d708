"""Sweeps: many `finetune` trials (beta x seed x init policy x learning rate) on Ray, one merged front.

Ray is an optional dependency (``pip install 'hgq_rewrite[sweep]'``); it is imported only
when a sweep runs.
"""

from .api import SweepResult, load_sweep, sweep
from .grid import Trial, expand_grid, normalize_grid
from .merge import SweepMember, merge_fronts

__all__ = ["sweep", "SweepResult", "SweepMember", "load_sweep", "Trial", "expand_grid", "normalize_grid",
           "merge_fronts"]
