"""Long-term simulated return of the SASRec family next to the slate policies.

SASRec-family models trained offline (``recrl train``) on MovieLens-100k ratings serve
slates — their top-k over the candidate pool given the user's clicks
(`recrl.pipelines.slate.sasrec_policy`) — to the simulated users of the frozen **test** user
model, in the same environment loop as cascading DQN (trained against the training users'
simulator), greedy-on-the-user-model and random. Each user leaves after ``--quit-after``
consecutive pages without a click (`UserModelEnvConfig.quit_after`), at most
``--episode-length`` pages. The user model is fitted on display sets without a single
no-click page, so with not clicking worth 0 (the paper's φ) it clicks on nearly every page
(CTR 0.998 for random slates) and nobody ever leaves; ``--no-click-utility`` u₀ = 13, near
the utilities of the items it is shown, brings CTRs to 0.5–0.7
(`UserModelEnvConfig.no_click_utility`). Reported per policy, mean ± std over seeds: the
reward per step (mean over users of the mean per-step learned reward), CTR (clicks / pages),
visit length (pages per user) and return (summed reward per visit); for the SASRec variants
also the offline metric, click HR@10 (and NDCG@10) on the prepared val and test splits,
ranked over the whole catalogue as ``recrl train`` ranks them.

No test user reaches a SASRec model: the sequences it trains on are the ratings of the
display sets' train and val users only (``--display-sets``' test users are removed from
``u.data`` before ``recrl prepare``), as CDQN only meets the training users' simulator.

Inputs, built beforehand (README, "Fit a user model and train slate policies"):

    recrl usermodel build --source movielens --input ../shared/data/movielens-100k \\
        --output runs/longterm/ml100k-sets
    recrl usermodel fit --data runs/longterm/ml100k-sets --out runs/longterm/um-train
    recrl usermodel fit --data runs/longterm/ml100k-sets --fit-on test --out runs/longterm/um-test

Then (``MLFLOW_TRACKING_URI`` set: a SASRec model is loaded from the MLflow model its
tracked run saves)::

    RAY_ADDRESS=local MLFLOW_TRACKING_URI=sqlite:///runs/longterm/mlruns.db \\
    python benchmarks/longterm_return.py --work runs/longterm --seeds 0 1 2

Work folders under ``--work``: ``ml100k-known-users/u.data`` and ``ml100k-seq/`` (the
SASRec data), ``sasrec/<variant>-s<seed>/`` (``recrl train`` runs; an existing one with a
model is reused), and the results ``longterm_return.json`` / ``.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

logger = logging.getLogger("longterm_return")

SLATE_POLICIES = ("cdqn", "greedy", "random")
"""`recrl slate` policies evaluated next to the SASRec variants."""
METRICS = ("reward", "ctr", "visit_length", "return")
OFFLINE = ("val_hr_10_click", "test_hr_10_click", "test_ndcg_10_click")


def known_user_ratings(ratings: Path, display_sets: Path, out: Path) -> int:
    """Write ``out`` = the MovieLens ``ratings`` file (``u.data``: user, item, rating, time,
    tab-separated) less every rating of the display sets' test users; returns rows kept.

    The display sets number users as ``recrl usermodel build`` does, by the sorted raw user
    ids of the log (`np.unique`), so encoded user u is the u-th smallest raw id."""
    raw = np.loadtxt(ratings, dtype=np.int64, usecols=0)
    users = np.unique(raw)
    meta = json.loads((display_sets / "meta.json").read_text())
    if len(users) != meta["n_users"]:
        raise ValueError(f"{ratings} has {len(users)} users, {display_sets} {meta['n_users']}: "
                         "build the display sets from this file")  # fmt: skip
    test = pq.read_table(display_sets / "test.parquet", columns=["user"]).column(0).to_numpy()
    held_out = set(users[np.unique(test)].tolist())
    out.parent.mkdir(parents=True, exist_ok=True)
    kept = 0
    with ratings.open() as source, out.open("w") as sink:
        for line, user in zip(source, raw, strict=True):
            if int(user) not in held_out:
                sink.write(line)
                kept += 1
    logger.info("%s: %d ratings of %d non-test users", out, kept, len(users) - len(held_out))
    return kept


def prepare_sequences(args) -> Path:
    """The SASRec family's transitions of the non-test users (built once)."""
    import recrl

    data = args.work / "ml100k-seq"
    if (data / "meta.json").is_file():
        return data
    known = args.work / "ml100k-known-users" / "u.data"
    known_user_ratings(args.ratings, args.display_sets, known)
    recrl.prepare(recrl.PrepareConfig("movielens", input_path=str(known.parent),
                                      output_path=str(data), state_len=args.state_len))  # fmt: skip
    return data


def train_variant(args, data: Path, variant: str, seed: int) -> Path:
    """``recrl train`` of ``variant`` (``--steps`` updates, H = ``--hidden``); an existing
    run folder with a saved model is reused."""
    import recrl

    run_dir = args.work / "sasrec" / f"{variant}-s{seed}"
    if (run_dir / "model" / "MLmodel").is_file():
        return run_dir
    config = recrl.TrainConfig.for_variant(
        variant, str(data), total_steps=args.steps, eval_interval=args.steps // 2, seed=seed,
        hidden_size=args.hidden, experiment="recrl-longterm",
    )  # fmt: skip
    recrl.train(config, run_dir=run_dir)
    return run_dir


def offline_metrics(recommender, data: Path) -> dict[str, float]:
    """Click HR@10 / NDCG@10 of the served model on the val and test splits, full ranking:
    the evaluation ``recrl train`` runs, on the model as loaded (so the number belongs to
    exactly the network that serves the slates)."""
    from recrl.pipelines.evaluation import EvalConfig, evaluate, load_eval_split
    from recrl.pipelines.sasrec.job import module_score_fn

    score = module_score_fn(recommender.network.eval(), recommender.spec.head)
    out = {}
    for split in ("val", "test"):
        metrics = evaluate(score, load_eval_split(data, split), EvalConfig())
        out[f"{split}_hr_10_click"] = metrics["hr_10_click"]
        out[f"{split}_ndcg_10_click"] = metrics["ndcg_10_click"]
    return out


def evaluate_sasrec(args, run_dir: Path, test_model, test_views, seed: int) -> dict[str, float]:
    from recrl.envs.user_model_env import UserModelEnv
    from recrl.pipelines.slate.evaluation import evaluate_policy
    from recrl.pipelines.slate.sasrec_policy import SASRecSlatePolicy

    policy = SASRecSlatePolicy.load(run_dir, args.display_sets, args.k)
    # the environment and evaluation seed of `run_slate_seed`, so every policy meets the
    # same simulated users under the same seeds
    env = UserModelEnv(test_model, test_views, env_config(args, seed))
    result = evaluate_policy(env, policy, args.episodes or None, seed=10_000 + seed)
    return {**result, **offline_metrics(policy.recommender, args.work / "ml100k-seq")}


def env_config(args, seed: int):
    from recrl.envs.user_model_env import UserModelEnvConfig

    return UserModelEnvConfig(slate_size=args.k, episode_length=args.episode_length,
                              max_pool=args.max_pool, seed=seed,
                              quit_after=args.quit_after,
                              no_click_utility=args.no_click_utility)  # fmt: skip


def slate_job(args, policy: str):
    from recrl.pipelines.slate.config import CDQNConfig, SlateJob

    return SlateJob(
        data=str(args.display_sets), user_model=str(args.user_model), policy=policy,
        test_user_model=str(args.test_user_model), k=args.k, episodes=args.episodes,
        episode_length=args.episode_length, quit_after=args.quit_after,
        no_click_utility=args.no_click_utility,
        max_pool=args.max_pool, cdqn=CDQNConfig(env_steps=args.cdqn_steps), tracking=False,
    )  # fmt: skip


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(rows: list[dict]) -> list[dict]:
    """Mean ± std over seeds per policy, in order of first appearance."""
    table = []
    for name in dict.fromkeys(r["policy"] for r in rows):
        runs = [r for r in rows if r["policy"] == name]
        entry = {"policy": name, "seeds": len(runs)}
        for metric in (*METRICS, *OFFLINE, "seconds"):
            if metric in runs[0]:
                entry[f"{metric}_mean"], entry[f"{metric}_std"] = _mean_std(
                    [r[metric] for r in runs]
                )
        table.append(entry)
    return table


def markdown(table: list[dict], args) -> str:
    def cell(entry, metric, digits=3):
        if f"{metric}_mean" not in entry:
            return "—"
        return f"{entry[f'{metric}_mean']:.{digits}f} ± {entry[f'{metric}_std']:.{digits}f}"

    lines = [
        f"k = {args.k}, pool ≤ {args.max_pool}, at most {args.episode_length} pages, quit after "
        f"{args.quit_after} pages without a click, {args.episodes or 'all'} test users per "
        f"seed; seeds {' '.join(map(str, args.seeds))}",
        "",
        "| policy | reward / step | CTR | visit length | return / visit | val HR@10 | test HR@10 |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in table:
        lines.append(
            f"| {e['policy']} | {cell(e, 'reward')} | {cell(e, 'ctr')} | "
            f"{cell(e, 'visit_length', 2)} | {cell(e, 'return')} | "
            f"{cell(e, 'val_hr_10_click')} | {cell(e, 'test_hr_10_click')} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("runs/longterm"))
    parser.add_argument("--ratings", type=Path,
                        default=Path("../shared/data/movielens-100k/u.data"))  # fmt: skip
    parser.add_argument("--display-sets", type=Path, default=None,
                        help="default: WORK/ml100k-sets")  # fmt: skip
    parser.add_argument("--user-model", type=Path, default=None,
                        help="default: WORK/um-train/user_model.pt")  # fmt: skip
    parser.add_argument("--test-user-model", type=Path, default=None,
                        help="default: WORK/um-test/user_model.pt")  # fmt: skip
    parser.add_argument("--variants", nargs="*", default=["sasrec", "snqn", "sasrec_ccql"])
    parser.add_argument("--policies", nargs="*", default=list(SLATE_POLICIES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--train-seeds", nargs="+", type=int, default=None,
                        help="SASRec training seeds, one per --seeds entry or a single one "
                             "for all (default: the --seeds)")  # fmt: skip
    parser.add_argument("--steps", type=int, default=800, help="SASRec updates per run")
    parser.add_argument("--hidden", type=int, default=64, help="SASRec H")
    parser.add_argument("--state-len", type=int, default=10,
                        help="SASRec L (the display sets' history length)")  # fmt: skip
    parser.add_argument("--cdqn-steps", type=int, default=500, help="CDQN env steps")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--episode-length", type=int, default=30)
    parser.add_argument("--quit-after", type=int, default=2)
    parser.add_argument("--no-click-utility", type=float, default=13.0,
                        help="u0: the simulated user's utility of not clicking (module "
                             "docstring)")  # fmt: skip
    parser.add_argument("--max-pool", type=int, default=512)
    parser.add_argument("--episodes", type=int, default=200,
                        help="simulated test users per seed (0: each test user once)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads: a step scores one user, too small to split, "
                             "and a shared machine pays for each extra thread")  # fmt: skip
    parser.add_argument("--name", default="longterm_return")
    parser.add_argument("--merge", nargs="*", type=Path, default=[],
                        help="JSON results of earlier runs (other policies, same settings) "
                             "whose rows join this table")  # fmt: skip
    args = parser.parse_args()
    args.display_sets = args.display_sets or args.work / "ml100k-sets"
    args.user_model = args.user_model or args.work / "um-train" / "user_model.pt"
    args.test_user_model = args.test_user_model or args.work / "um-test" / "user_model.pt"
    train_seeds = args.train_seeds or args.seeds
    if len(train_seeds) == 1:
        train_seeds = train_seeds * len(args.seeds)
    if len(train_seeds) != len(args.seeds):
        parser.error("--train-seeds: one per --seeds entry, or a single one")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(args.threads)

    from recrl.models.user_model.checkpoint import load_user_model
    from recrl.pipelines.display_sets.records import load_display_sets
    from recrl.pipelines.ray_runtime import ensure_ray
    from recrl.pipelines.slate.job import run_slate_seed

    start = time.perf_counter()
    if "cdqn" in args.policies:  # RLlib trains it; prepare and train start Ray themselves
        ensure_ray(num_cpus=1, object_store_memory=256 * 1024 * 1024)
    data = prepare_sequences(args)
    dataset = load_display_sets(args.display_sets)
    train_model = load_user_model(args.user_model)
    test_model = load_user_model(args.test_user_model)
    rows = []
    for seed, train_seed in zip(args.seeds, train_seeds, strict=True):
        for variant in args.variants:
            began = time.perf_counter()
            run_dir = train_variant(args, data, variant, train_seed)
            result = evaluate_sasrec(args, run_dir, test_model, dataset.splits["test"], seed)
            rows.append({"policy": variant, "seed": seed, "train_seed": train_seed, **result,
                         "seconds": time.perf_counter() - began})  # fmt: skip
            logger.info("%s", rows[-1])
            write_results(args, rows, train_seeds, time.perf_counter() - start)
        for policy in args.policies:
            began = time.perf_counter()
            result = run_slate_seed(slate_job(args, policy), seed, train_model, test_model,
                                    dataset)  # fmt: skip
            rows.append({"policy": policy, "seed": seed, **result,
                         "seconds": time.perf_counter() - began})  # fmt: skip
            logger.info("%s", rows[-1])
            write_results(args, rows, train_seeds, time.perf_counter() - start)
    text = write_results(args, rows, train_seeds, time.perf_counter() - start)
    print(text)


def write_results(args, rows: list[dict], train_seeds: list[int], wall: float) -> str:
    """``<name>.json`` (settings, per-seed rows, table) and ``<name>.md`` in ``--work``,
    rows of ``--merge`` included; returns the markdown. Called after every row, so a run
    cut short leaves what it measured."""
    merged = rows + [row for path in args.merge for row in json.loads(path.read_text())["rows"]]
    table = summarise(merged)
    settings = {k: [str(p) for p in v] if k == "merge" else str(v) if isinstance(v, Path) else v
                for k, v in vars(args).items()}  # fmt: skip
    report = {"settings": settings, "train_seeds": train_seeds, "rows": rows,
              "merged_rows": merged, "table": table, "wall_s": wall}  # fmt: skip
    (args.work / f"{args.name}.json").write_text(json.dumps(report, indent=2))
    text = markdown(table, args) + f"\nwall time {wall:.0f} s (this run)\n"
    (args.work / f"{args.name}.md").write_text(text)
    return text


if __name__ == "__main__":
    main()
