"""Where a SASRec learner trains: the device of a GPU request, checked before Ray is asked.

RLlib places a learner on ``cuda`` as soon as it is given GPUs; without CUDA it fails with
an assertion about ``local_gpu_idx`` (a local learner) or waits forever for a GPU the
cluster does not have (remote learners). These checks turn both into a clear message.
"""

from __future__ import annotations

import torch
from recrl.pipelines.sasrec.config import TrainConfig


def learner_device(num_gpus_per_learner: float, *, cuda: bool | None = None) -> torch.device:
    """``cuda`` for a learner given (a fraction of) a GPU, ``cpu`` for one given none.

    ``cuda`` says whether CUDA is usable here (default: ``torch.cuda.is_available()``).
    Raises ValueError when GPUs are requested where it is not (no GPU, or a CPU build of
    torch), naming the setting to change.
    """
    if num_gpus_per_learner < 0:
        raise ValueError(f"num_gpus_per_learner must be >= 0, got {num_gpus_per_learner}")
    if num_gpus_per_learner == 0:
        return torch.device("cpu")
    if not (torch.cuda.is_available() if cuda is None else cuda):
        raise ValueError(
            f"num_gpus_per_learner={num_gpus_per_learner:g} but CUDA is not available in this "
            f"process (torch {torch.__version__}); pass --num-gpus-per-learner 0 to train on "
            "CPU, or run where a GPU and a CUDA build of torch are installed."
        )
    return torch.device("cuda")


def check_gpu_request(
    config: TrainConfig,
    cluster_gpus: float,
    *,
    cuda: bool | None = None,
) -> torch.device:
    """Check that ``config``'s GPU request can be met and return the learners' device.

    A local learner (``num_learners=0``) trains in this process, so CUDA must be available
    here; remote learners need ``num_learners * num_gpus_per_learner`` GPUs in the cluster
    (``cluster_gpus``, from ``ray.cluster_resources()``).
    """
    gpus = config.num_gpus_per_learner
    if config.num_learners == 0 or gpus == 0:
        return learner_device(gpus, cuda=cuda)
    needed = config.num_learners * gpus
    if cluster_gpus + 1e-9 < needed:
        raise ValueError(
            f"{config.num_learners} learners x {gpus:g} GPU need {needed:g} GPUs but the Ray "
            f"cluster has {cluster_gpus:g}; lower --num-learners or --num-gpus-per-learner "
            "(0 trains on CPU), or add GPU nodes."
        )
    return torch.device("cuda")
