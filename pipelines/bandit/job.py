"""A bandit run (`recrl bandit`, a bandit sweep trial): the chosen back end, in one call.

The ``loop`` back end (`recrl.pipelines.bandit.loop`) steps the policy and the simulator in this
process; ``rllib`` (`recrl.pipelines.bandit.algorithm`) runs the same agent as an RLlib
module, learner and EnvRunners. Both import the shared pieces from ``loop``; only this
module imports both, so neither imports the other back.
"""

from __future__ import annotations

import torch
from recrl.pipelines.bandit.config import BanditRunConfig
from recrl.pipelines.bandit.loop import BanditRunResult, run_loop
from recrl.pipelines.tracking import Tracker


def run_bandit(
    config: BanditRunConfig, tracker: Tracker | None = None, *, progress: bool = True
) -> BanditRunResult:
    """Run ``config.rounds`` rounds on ``config.backend``; log to ``tracker`` (a started run)
    when given. ``rllib`` starts a local Ray runtime when none is up.

    Torch runs single-threaded: its tensors are tiny (d = 8, a few thousand rows), and
    intra-op threads then cost far more in synchronisation than they save (66 ms against
    0.6 ms for one ridge sweep, measured on a loaded 2-core machine).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if config.backend == "rllib":
            from recrl.pipelines.bandit.algorithm import run_bandit_rllib
            from recrl.pipelines.ray_runtime import ensure_ray

            ensure_ray()
            return run_bandit_rllib(config, tracker, progress=progress)
        return run_loop(config, tracker, progress=progress)
    finally:
        torch.set_num_threads(threads)
