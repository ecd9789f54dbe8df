"""Paper Table 3 on MovieLens-100k: slate policies against the test users' simulator.

One seed: build the display sets (users split 50/12.5/37.5 % by the seed), fit the training
environment's user model (GAN-PW, maximum likelihood) on the train users' page views and the
test environment's on the test users' only (paper §6.2), then for each k train CDQN, RWD1
and GDQN with RLlib against the training users, DQN-Off on their logged page views, and
evaluate every policy — with greedy-on-the-user-model and random — on the test environment:
cumulative reward (mean per-step learned reward, averaged over users) and CTR, one episode
per test user. `benchmarks/slate_bench.py --part table3` runs it and writes the table.

Also reported per seed: the test model's mean no-click probability on the logged page views
(40 shown items) and on random k-item slates, which explains the CTRs on this dataset.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from recrl.envs.user_model_env import UserModelEnv, UserModelEnvConfig
from recrl.models.slate.policies import GreedyUserModelPolicy, RandomSlatePolicy
from recrl.models.user_model.checkpoint import LoadedUserModel
from recrl.models.user_model.config import UserModelConfig
from recrl.models.user_model.trainer import fit_user_model
from recrl.pipelines.display_sets.build import build_display_sets
from recrl.pipelines.display_sets.config import DisplaySetConfig
from recrl.pipelines.display_sets.records import load_display_sets
from recrl.pipelines.slate.config import CDQNConfig
from recrl.pipelines.slate.evaluation import evaluate_policy, item_feature_table
from recrl.pipelines.slate.offline import train_offline_slate_q
from recrl.pipelines.slate.training import ModuleSlatePolicy, train_slate_q

logger = logging.getLogger("slate_bench.table3")
POLICIES = ("CDQN", "Greedy", "Random", "GDQN", "RWD1", "DQN-Off")
ONLINE = ("CDQN", "GDQN", "RWD1")
"""Trained with RLlib against the training users' simulator (the others need no Ray)."""


def _fit(data, split: str, seed: int, epochs: int) -> LoadedUserModel:
    config = UserModelConfig(state="pw", seed=seed, epochs=epochs)
    views = data.splits[split]
    fit = fit_user_model(config, views, data.splits["val"], data.item_features, progress=False)
    for net in (fit.model, fit.reward):
        net.eval().requires_grad_(False)
    return LoadedUserModel(fit.model, fit.reward, data.item_features, {"split": split})


def no_click_probability(model, views, k: int, seed: int) -> dict[str, float]:
    """Mean φ(no-click) of ``model`` on the logged shown sets and on random k-subsets."""
    t = views.tensors()
    with torch.no_grad():
        logged = torch.softmax(model.choice_logits(t["history"], t["shown"], t["shown_mask"]), 1)
        keys = torch.rand(t["shown"].shape, generator=torch.Generator().manual_seed(seed))
        slots = torch.topk(keys.masked_fill(~t["shown_mask"], -1.0), k, dim=1).indices
        subset = torch.gather(t["shown"], 1, slots)
        small = torch.softmax(model.choice_logits(t["history"], subset, subset != views.pad_id), 1)
    return {"logged_sets": float(logged[:, -1].mean()), f"random_k{k}": float(small[:, -1].mean())}


def run_seed(data_path: str, seed: int, work: Path, ks, steps: int, epochs: int,
             episode_length: int, max_pool: int, start_ray=lambda: None) -> dict:  # fmt: skip
    """``start_ray`` is called before the first RLlib training: everything else of a seed
    runs without a Ray runtime."""
    out = work / f"ml100k-seed{seed}"
    build_display_sets(
        DisplaySetConfig(source="movielens", input_path=data_path, output_path=str(out), seed=seed)
    )
    data = load_display_sets(out)
    start = time.perf_counter()
    train_model = _fit(data, "train", seed, epochs)
    test_model = _fit(data, "test", seed, epochs)
    logger.info("seed %d: user models fitted in %.0f s", seed, time.perf_counter() - start)
    train_views, test_views = data.splits["train"], data.splits["test"]
    rows = []
    for k in ks:
        env_config = UserModelEnvConfig(slate_size=k, episode_length=episode_length,
                                        max_pool=max_pool, seed=seed)  # fmt: skip
        test_env = UserModelEnv(test_model, test_views, env_config)
        base = CDQNConfig(env_steps=steps, warmup_steps=min(500, steps // 5), seed=seed)
        # Ray-free policies first: on a loaded machine Ray's start-up is the risky step.
        for name in sorted(POLICIES, key=lambda n: n in ONLINE):
            if name in ONLINE:
                start_ray()
            start = time.perf_counter()
            policy = _policy(name, k, seed, base, train_model, train_views, env_config)
            trained = time.perf_counter() - start
            result = evaluate_policy(test_env, policy, episodes=None, seed=10_000 + seed)
            row = {"policy": name, "k": k, "seed": seed, **result, "train_s": trained,
                   "eval_s": time.perf_counter() - start - trained}  # fmt: skip
            logger.info("seed %d k=%d %-8s %s", seed, k, name, row)
            rows.append(row)
    no_click = {k: no_click_probability(test_model.model, test_views, k, seed) for k in ks}
    return {"seed": seed, "rows": rows, "no_click": no_click,
            "test_users": len(np.unique(test_views.user))}  # fmt: skip


def _policy(name, k, seed, base: CDQNConfig, loaded: LoadedUserModel, views, env_config):
    if name == "Random":
        return RandomSlatePolicy(k, seed=seed)
    if name == "Greedy":
        return GreedyUserModelPolicy(loaded.model, k)
    if name == "DQN-Off":
        features = item_feature_table(loaded.model).numpy()
        module = train_offline_slate_q(views, loaded, features, k, base, progress=False)
    else:
        config = dataclasses.replace(
            base,
            reward="pm1" if name == "RWD1" else "learned",
            q_form="additive" if name == "GDQN" else "cascading",
        )
        module = train_slate_q(lambda: UserModelEnv(loaded, views, env_config), config,
                               progress=False)  # fmt: skip
    return ModuleSlatePolicy(module, state_model=loaded.model)


def summarise(per_seed: list[dict]) -> list[dict]:
    """Mean ± std over seeds per (k, policy), in `POLICIES` order.

    Each seed draws its own user split and fits its own simulators, so the level of reward
    moves between seeds more than policies differ within one. The ordering is therefore
    also given paired: ``vs_greedy`` is the policy's reward minus greedy's on the same seed
    and k (mean ± std over seeds), ``above_greedy`` the number of seeds where it is higher
    out of the ``paired_seeds`` that have a greedy row.
    """
    rows = [row for seed in per_seed for row in seed["rows"]]
    greedy = {(r["seed"], r["k"]): r["reward"] for r in rows if r["policy"] == "Greedy"}
    table = []
    for k in sorted({r["k"] for r in rows}):
        for name in POLICIES:
            runs = [r for r in rows if r["k"] == k and r["policy"] == name]
            if not runs:
                continue
            entry = {"k": k, "policy": name, "seeds": len(runs)}
            for metric in ("reward", "ctr", "train_s"):
                entry[f"{metric}_mean"], entry[f"{metric}_std"] = _mean_std(
                    [r[metric] for r in runs]
                )
            paired = [r["reward"] - greedy[r["seed"], k] for r in runs if (r["seed"], k) in greedy]
            entry["vs_greedy_mean"], entry["vs_greedy_std"] = _mean_std(paired)
            entry["above_greedy"], entry["paired_seeds"] = sum(d > 0 for d in paired), len(paired)
            table.append(entry)
    return table


def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0
