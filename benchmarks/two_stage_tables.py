"""Benchmark: the two-stage paper's Tables 5–6 on the MovieLens-100K user-choice simulator.

Every policy runs in its one-stage and its two-stage (``2-``) form under the same computation
budget B (``models/bandits/budget.py``): a one-stage policy scores B items drawn uniformly from
the catalogue each round; a two-stage policy scores all q topics (MovieLens genres, 19) and
B − q items of its DynaTopicRec groups, with the minimum group size p = B/m (the paper sets p to
the per-recommendation budget), so that the m groups hold at least B items. ``--budgets none``
adds Table 6's setting: no budget, p = #items/#topics.

100 users, 2,000 rounds, 5 recommendations a round, as in Table 5. Per run: the cumulative CTR
(Σ_t clicks_t / m) and the seconds of three phases over the run: ``select`` — the policy's
scoring and slate (the paper's "running time for recommendation", what B and the two stages
change), ``context`` — the representation's forward passes that build the policy's input (the
user's embedding, Monte-Carlo dropout passes), and ``total`` — the whole loop, with the
policy's updates and the representation's refits. Each is the process's CPU time (torch runs
one thread): on a shared machine the wall time mostly measures the other processes; the wall
time of the whole loop is kept too (``wall``). The loop is
``recrl.pipelines.bandit.loop.run_loop``'s with those phases timed apart; its slates are
run_loop's (same seeds, same calls).

``--part scaling`` times the recommendation step alone as the catalogue grows: one
``select`` of a fresh one-stage and two-stage policy without a budget (p = #items/#topics), on
random embeddings, with 19 topics that keep MovieLens-100K's genre shares or are balanced.

The UCB width β scales with the representation (benchmarks/bandit_movielens.py chooses it per
policy); ``--betas POLICY=β`` sets a family's β for both its forms, the default keeps 0.1.

examples:
  python benchmarks/two_stage_tables.py --data ../shared/data/movielens-100k
  python benchmarks/two_stage_tables.py --data ../shared/data/movielens-100k --seeds 0 \\
      --policies n-greedy s-n-galm-ucb --budgets 100 none --rounds 500
  python benchmarks/two_stage_tables.py --part scaling --policies s-n-galm-ucb n-greedy
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from recrl.models.bandits import BanditContext, PolicySizes, make_policy  # noqa: E402
from recrl.pipelines.bandit.agent import BanditAgent  # noqa: E402
from recrl.pipelines.bandit.config import BanditRunConfig  # noqa: E402
from recrl.pipelines.bandit.loop import make_environment  # noqa: E402

logger = logging.getLogger("two_stage_tables")
FAMILIES = ("random", "n-greedy", "n-dropout-ucb", "n-glm-ucb", "s-n-galm-ucb", "s-n-gblm-ucb")
"""Policies with a one-stage and a two-stage form (the paper's Table 5 rows, and N-GLM-UCB)."""
PHASES = ("select", "context", "total", "wall")
ML100K_GENRE_ITEMS = (2, 251, 60, 35, 48, 426, 74, 49, 531, 1, 14, 62, 9, 20, 31, 15, 36, 5, 13)
"""Items per first genre of MovieLens-100K: the shares of ``--part scaling``'s topics."""


@dataclass(frozen=True)
class TimedRun:
    """One run's cumulative CTR and seconds per phase (module docstring)."""

    policy: str
    budget: int | None
    seed: int
    cumulative_ctr: float
    seconds: dict[str, float]
    scores_per_round: float
    """Acquisition scores computed per round, on average: the items scored, plus the q topics
    of a two-stage policy."""


def timed_run(config: BanditRunConfig) -> TimedRun:
    """``run_loop``'s rounds for ``config``, timing the policy's slate apart from the rest
    (``scores_and_select``: ``select``'s slate, and the scores it computed)."""
    clock = time.process_time
    torch.manual_seed(config.seed)
    env = make_environment(config)
    observation, _ = env.reset(seed=config.seed)
    agent = BanditAgent(config, env.n_users, env.n_items, env.item_topics)
    ctr = np.zeros(config.rounds)
    seconds = dict.fromkeys(PHASES, 0.0)
    scored = 0
    start, wall = clock(), time.perf_counter()
    for t in range(config.rounds):
        # agent.act(observation, k), split into its two calls
        before = clock()
        context = agent.context(observation)
        between = clock()
        # select's slate, with the scores it computed (-inf for items it did not score)
        scores, slate = agent.policy.scores_and_select(context, config.slate_size)
        seconds["context"] += between - before
        seconds["select"] += clock() - between
        scored += int(torch.isfinite(scores).sum())
        shown_to = observation
        observation, _, _, _, info = env.step(slate[0].numpy())
        item_rewards = torch.as_tensor(info["item_rewards"], dtype=torch.float32)
        agent.learn(shown_to, slate[0], item_rewards, torch.as_tensor(info["clicks"]), context)
        ctr[t] = float(np.mean(info["clicks"]))
    seconds["total"], seconds["wall"] = clock() - start, time.perf_counter() - wall
    budget = config.policy_settings.get("budget")
    if config.policy.startswith("2-"):
        scored += config.rounds * (int(env.item_topics.max()) + 1)
    per_round = scored / config.rounds
    return TimedRun(config.policy, budget, config.seed, float(ctr.sum()), seconds, per_round)


def run_config(args, policy: str, budget: int | None, seed: int) -> BanditRunConfig:
    family = policy.removeprefix("2-")
    settings: dict = {} if budget is None else {"budget": budget}
    if policy.startswith("2-"):
        # p = the per-recommendation budget (paper §4); Table 6: #items / #topics
        settings["min_group_items"] = (
            budget // args.slate_size if budget is not None else args.items_per_topic
        )
    if family in args.betas:
        settings["beta"] = args.betas[family]
    return BanditRunConfig(
        policy=policy, env="ml-100k", data_path=str(args.data), n_users=args.users,
        slate_size=args.slate_size, rounds=args.rounds, seed=seed, tracking=False,
        encoder=args.encoder, policy_settings=settings,
    )  # fmt: skip


def mean_std(values: list[float]) -> dict[str, float]:
    """Mean and std over seeds (ddof 0, as benchmarks/bandit_movielens.py)."""
    return {"mean": float(np.mean(values)), "std": float(np.std(values))}


def summarise(runs: list[TimedRun]) -> list[dict]:
    """One row per (family, budget): both forms' CTR and phase times (mean ± std over
    seeds), and the one-stage / two-stage time ratios paired by seed."""
    by_key: dict[tuple[str, int | None], dict[int, TimedRun]] = {}
    for run in runs:
        by_key.setdefault((run.policy, run.budget), {})[run.seed] = run
    rows = []
    for (policy, budget), one in by_key.items():
        if policy.startswith("2-") or (f"2-{policy}", budget) not in by_key:
            continue
        two = by_key[(f"2-{policy}", budget)]
        seeds = sorted(set(one) & set(two))
        row = {"policy": policy, "budget": budget, "seeds": seeds}
        for form, form_runs in (("one", one), ("two", two)):
            row[form] = {
                "cumulative_ctr": mean_std([form_runs[s].cumulative_ctr for s in seeds]),
                "scores_per_round": mean_std([form_runs[s].scores_per_round for s in seeds]),
            }
            for phase in PHASES:
                row[form][phase] = mean_std([form_runs[s].seconds[phase] for s in seeds])
        for phase in ("select", "total", "wall"):
            ratios = [one[s].seconds[phase] / two[s].seconds[phase] for s in seeds]
            row[f"{phase}_ratio"] = mean_std(ratios)
        row["ctr_above"] = sum(two[s].cumulative_ctr > one[s].cumulative_ctr for s in seeds)
        rows.append(row)
    return rows


def cell(stats: dict, digits: int = 1) -> str:
    return f"{stats['mean']:,.{digits}f} ± {stats['std']:,.{digits}f}"


def table(rows: list[dict]) -> str:
    """A markdown table: per budget and family, the scores per round and, for the one-stage
    and the 2- form, the cumulative CTR (with the seeds where 2- is above), the CPU seconds
    of ``select`` and of the whole loop, and its wall seconds (mean ± std over seeds)."""
    lines = [
        "| B | policy | scores/round | cumulative CTR | 2- (above) | select CPU s | 2- "
        "| loop CPU s | 2- | loop wall s | 2- |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        one, two = row["one"], row["two"]
        lines.append(
            f"| {row['budget'] or 'none'} | {row['policy']} "
            f"| {one['scores_per_round']['mean']:,.0f}, {two['scores_per_round']['mean']:,.0f} "
            f"| {cell(one['cumulative_ctr'])} "
            f"| {cell(two['cumulative_ctr'])} ({row['ctr_above']}/{len(row['seeds'])}) "
            f"| {cell(one['select'], 2)} | {cell(two['select'], 2)} "
            f"| {cell(one['total'])} | {cell(two['total'])} "
            f"| {cell(one['wall'])} | {cell(two['wall'])} |"
        )
    return "\n".join(lines)


def scaling_topics(n_items: int, layout: str) -> torch.Tensor:
    """Topic of each of ``n_items`` items [n_items]: 19 topics with MovieLens-100K's genre
    shares (``movielens``) or of equal size (``balanced``)."""
    shares = np.array(ML100K_GENRE_ITEMS if layout == "movielens" else [1] * 19, dtype=float)
    sizes = np.maximum(np.floor(shares / shares.sum() * n_items).astype(int), 1)
    sizes[np.argmax(sizes)] += n_items - sizes.sum()  # the rounding rest to the largest
    return torch.repeat_interleave(torch.arange(19), torch.as_tensor(sizes))


def select_scaling(policy: str, n_items: int, layout: str, *, dim: int, k: int, calls: int):
    """CPU ms per ``select`` of ``policy`` and ``2-policy`` (fresh state, no budget, p =
    #items/#topics) on random embeddings [n_items, dim], and the items the 2- form scored."""
    generator = torch.Generator().manual_seed(0)
    topics = scaling_topics(n_items, layout)
    sizes = PolicySizes(100, n_items, dim, dim, item_topics=topics)
    context = BanditContext(
        torch.tensor([0]), torch.randn(n_items, dim, generator=generator),
        torch.randn(1, dim, generator=generator),
        mc_predictions=torch.rand(5, 1, n_items, generator=generator),
    )  # fmt: skip
    row = {"policy": policy, "n_items": n_items, "layout": layout}
    for name, settings in ((policy, {}), (f"2-{policy}", {"min_group_items": n_items // 19})):
        bandit = make_policy(name, sizes, settings)
        for _ in range(3):  # warm-up
            scores, _ = bandit.scores_and_select(context, k)
        start = time.process_time()
        for _ in range(calls):
            bandit.select(context, k)
        row[f"{'two' if name.startswith('2-') else 'one'}_ms"] = (
            (time.process_time() - start) / calls * 1e3
        )
    row["two_scored"] = int(torch.isfinite(scores).sum()) + 19
    return row


def scaling_table(rows: list[dict]) -> str:
    lines = [
        "| policy | items | topics | items + topics scored by 2- | select ms one | select ms two "
        "| one/two |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['policy']} | {row['n_items']:,} | {row['layout']} | {row['two_scored']:,} "
            f"| {row['one_ms']:.2f} | {row['two_ms']:.2f} | {row['one_ms'] / row['two_ms']:.2f} |"
        )
    return "\n".join(lines)


def parse_budget(text: str) -> int | None:
    return None if text.lower() == "none" else int(text)


def parse_beta(text: str) -> tuple[str, float]:
    policy, _, value = text.partition("=")
    if not value:
        raise argparse.ArgumentTypeError(f"--betas takes POLICY=VALUE, got {text!r}")
    return policy, float(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--part", choices=("tables", "scaling"), default="tables",
        help="tables: Tables 5-6 on the simulator; scaling: select time against catalogue size",
    )  # fmt: skip
    parser.add_argument("--data", type=Path, help="MovieLens-100K folder (--part tables)")
    parser.add_argument(
        "--items", type=int, nargs="+", default=[1682, 10_000, 50_000],
        help="catalogue sizes of --part scaling",
    )  # fmt: skip
    parser.add_argument("--dim", type=int, default=32, help="embedding width of --part scaling")
    parser.add_argument("--policies", nargs="+", default=list(FAMILIES), help="one-stage names")
    parser.add_argument(
        "--budgets", type=parse_budget, nargs="+", default=[100, 500],
        help="B per round; 'none' = no budget (Table 6)",
    )  # fmt: skip
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="trials")
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--slate-size", type=int, default=5)
    parser.add_argument(
        "--items-per-topic", type=int, default=89,
        help="p without a budget (Table 6: #items/#topics, 1,682/19 on MovieLens-100K)",
    )  # fmt: skip
    parser.add_argument(
        "--encoder", choices=("sasrec", "latent-factor"), default="sasrec",
        help="representation the policies read (default: the SASRec two-tower)",
    )  # fmt: skip
    parser.add_argument(
        "--betas", type=parse_beta, nargs="*", default=[], help="POLICY=β for both forms"
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument(
        "--resume", action="store_true",
        help="keep the runs of an earlier summary in --out and run only the missing ones",
    )  # fmt: skip
    args = parser.parse_args(argv)
    args.betas = dict(args.betas)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as recrl.pipelines.bandit.job.run_bandit: tiny tensors
    if args.part == "scaling":
        try:
            rows = [
                select_scaling(policy, n, layout, dim=args.dim, k=args.slate_size, calls=30)
                for policy in args.policies
                for n in args.items
                for layout in ("movielens", "balanced")
            ]
        finally:
            torch.set_num_threads(threads)
        print(scaling_table(rows))
        return 0
    if args.data is None:
        parser.error("--part tables needs --data (the MovieLens-100K folder).")
    args.out.mkdir(parents=True, exist_ok=True)
    summary = args.out / f"two_stage_tables_{args.encoder}.json"
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    runs: list[TimedRun] = []
    if args.resume and summary.exists():
        runs = [TimedRun(**run) for run in json.loads(summary.read_text())["runs"]]
    done = {(run.policy, run.budget, run.seed) for run in runs}
    try:
        for seed in args.seeds:
            for budget in args.budgets:
                for family in args.policies:
                    for policy in (family, f"2-{family}"):
                        if (policy, budget, seed) in done:
                            continue
                        run = timed_run(run_config(args, policy, budget, seed))
                        runs.append(run)
                        logger.info(
                            "%s B=%s seed %d: cumulative CTR %.1f, CPU s: select %.2f, "
                            "total %.1f; wall %.1f s",
                            policy, budget, seed, run.cumulative_ctr, run.seconds["select"],
                            run.seconds["total"], run.seconds["wall"],
                        )  # fmt: skip
                        # after every run, so that a stopped benchmark keeps what it measured
                        write_summary(summary, settings, runs)
    finally:
        torch.set_num_threads(threads)
    print(table(summarise(runs)))
    print(f"\nsummary: {summary}")
    return 0


def write_summary(path: Path, settings: dict, runs: list[TimedRun]) -> None:
    payload = {"settings": settings, "rows": summarise(runs), "runs": [r.__dict__ for r in runs]}
    path.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    sys.exit(main())
