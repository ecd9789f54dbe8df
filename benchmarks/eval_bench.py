"""Benchmark: recrl's full-ranking evaluation against a bare torch product + rank, one process.

A SASRec network (random weights; the supervised bias set to log(1 + train count) of each
item, so that the ranking resembles a trained model's and HR/NDCG@k are far from zero)
scores a prepared split, by default RC15 val (25.9k events × 17.8k items), twice:

- recrl: ``recrl.pipelines.evaluation.evaluate`` with a score function;
- bare: one [N, H] × [H, I] product in chunks of ``--bare-chunk`` rows, the rank of the
  true item (the number of items scoring at least as high, itself included: recrl's
  pessimistic tie rule), and the metrics from the ranks.

``--scores product`` (the default, the issue's "bare torch product + rank of the same
tensors"): the state vectors [N, H] are encoded once, before timing, and both sides only
multiply and rank; recrl's score function looks its batch's rows up in them (the split's
events carry their row id as their "state"), so the ratio is evaluation's own overhead.
``--scores network``: both sides also encode the states, recrl through the network's
``score_all`` as training's periodic validation calls it, bare in one pass.

They run interleaved, so load from other processes hits both alike; the ratio of medians is
the figure to read. Target: recrl ≤ 1.3× bare. The metrics must be identical to the last
digit: the bare side sums the NDCG gains and the rewards of the hits exactly (``math.fsum``,
correctly rounded), recrl from exact rank counts; identical ranks give identical values.
Untimed, recrl's scores are ranked once more to compare the ranks of the two sides, and
recrl's metrics are set against the per-batch float64 sums of
``recrl.models.evaluation.ranking_sums`` (how evaluation summed before; they may differ in the
last digit, as float64 sums in another order).

    python benchmarks/eval_bench.py --data data/rc15 --threads 1
    python benchmarks/eval_bench.py --data data/rc15 --threads 1 --scores network
    python benchmarks/eval_bench.py --data data/rc15 --max-rows 4000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from recrl.models.evaluation.ranking import (  # noqa: E402
    finalize_ranking,
    merge_sums,
    ranking_sums,
    true_item_ranks,
)
from recrl.models.sasrec.encoder import SASRecConfig  # noqa: E402
from recrl.models.sasrec.network import SASRecQNetwork  # noqa: E402
from recrl.pipelines.evaluation import EvalConfig, EvalData, evaluate, load_eval_split  # noqa: E402
from recrl.pipelines.prepare.meta import read_meta  # noqa: E402

RATIO_TARGET = 1.3
EVENTS = ("click", "purchase")


def build_network(meta: dict, seed: int) -> SASRecQNetwork:
    """Default SASRec settings with the split's L, in eval mode; popularity in the bias."""
    torch.manual_seed(seed)
    network = SASRecQNetwork(meta["n_items"], SASRecConfig(max_len=meta["L"]))
    counts = torch.tensor(meta["item_counts_train"], dtype=torch.float32)
    with torch.no_grad():
        network.encoder.supervised_bias.copy_(torch.log1p(counts))
    return network.eval()


def encode_all(network: SASRecQNetwork, data: EvalData) -> torch.Tensor:
    """Every event's state vector, [N, H], in one pass."""
    with torch.inference_mode():
        return network.encoder.encode(data.state.long(), data.state_len.long())


def bare_ranks(
    network: SASRecQNetwork, data: EvalData, chunk: int, states: torch.Tensor | None = None
) -> torch.Tensor:
    """Pessimistic rank of every event's true item, [N] int64, with plain torch; the states
    are encoded here unless given."""
    encoder = network.encoder
    with torch.inference_mode():
        if states is None:
            states = encode_all(network, data)  # [N, H]
        weight, bias = encoder.supervised_weight, encoder.supervised_bias
        actions = data.action.long().unsqueeze(1)
        ranks = torch.empty(data.num_rows, dtype=torch.long)
        for lo in range(0, data.num_rows, chunk):
            scores = torch.addmm(bias, states[lo : lo + chunk], weight.T)  # [chunk, I]
            true = scores.gather(1, actions[lo : lo + chunk])
            ranks[lo : lo + chunk] = (scores >= true).sum(1)
    return ranks


def bare_metrics(ranks: torch.Tensor, data: EvalData, ks: tuple[int, ...]) -> dict[str, float]:
    """HR@k, NDCG@k per event type and reward@k from the ranks; sums exact (``math.fsum``)."""
    gain = 1.0 / torch.log2(ranks.double() + 1.0)
    reward = data.reward.double()
    out: dict[str, float] = {}
    for k in ks:
        hit = ranks <= k
        for event, mask in zip(EVENTS, (~data.is_buy, data.is_buy), strict=True):
            count = int(mask.sum())
            hits = hit & mask
            out[f"hr_{k}_{event}"] = int(hits.sum()) / count if count else math.nan
            ndcg = math.fsum(gain[hits].tolist())
            out[f"ndcg_{k}_{event}"] = ndcg / count if count else math.nan
        out[f"reward_{k}"] = math.fsum(reward[hit].tolist())
    return out


def per_batch_sums_metrics(
    score_fn, data: EvalData, config: EvalConfig
) -> tuple[dict[str, float], torch.Tensor]:
    """The metrics as float64 sums per batch of ``ranking_sums``, added over batches (how
    evaluation summed before), and the ranks of recrl's scores, [N] int64."""
    totals: dict = {}
    ranks = []
    with torch.inference_mode():
        for lo in range(0, data.num_rows, config.batch_size):
            hi = lo + config.batch_size
            scores = score_fn(data.state[lo:hi], data.state_len[lo:hi])
            sums = ranking_sums(
                scores, data.action[lo:hi], data.is_buy[lo:hi], data.reward[lo:hi], config.ks
            )
            totals = merge_sums(totals, sums)
            ranks.append(true_item_ranks(scores, data.action[lo:hi]))
    return finalize_ranking(totals), torch.cat(ranks)


def same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO / "data" / "rc15"), help="prepared dataset")
    parser.add_argument("--split", default="val")
    parser.add_argument("--max-rows", type=int, default=None, help="first N events only")
    parser.add_argument("--batch-size", type=int, default=EvalConfig.batch_size,
                        help="recrl's EvalConfig.batch_size (training's default)")  # fmt: skip
    parser.add_argument("--scores", choices=("product", "network"), default="product",
                        help="product: states encoded untimed; network: both encode")  # fmt: skip
    parser.add_argument("--bare-chunk", type=int, default=1024, help="rows per bare product")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    meta = read_meta(args.data)
    data = load_eval_split(args.data, args.split)
    if args.max_rows:
        data = data.head(args.max_rows)
    network = build_network(meta, args.seed)
    config = EvalConfig(batch_size=args.batch_size)

    def score_fn(state: torch.Tensor, state_len: torch.Tensor) -> torch.Tensor:
        return network.score_all(state.long(), state_len.long())  # as the RLModule does

    states, eval_data = None, data
    if args.scores == "product":
        states = encode_all(network, data)  # [N, H], not timed
        encoder = network.encoder
        weight, bias = encoder.supervised_weight, encoder.supervised_bias
        # each event's "state" is its row id, its score row the product of that row's vector
        eval_data = EvalData(
            state=torch.arange(data.num_rows, dtype=torch.int32).unsqueeze(1),
            state_len=torch.ones(data.num_rows, dtype=torch.int32),
            action=data.action, is_buy=data.is_buy, reward=data.reward,
            n_items=data.n_items, pad_id=data.pad_id, split=data.split,
        )  # fmt: skip

        def score_fn(state: torch.Tensor, state_len: torch.Tensor) -> torch.Tensor:
            return torch.addmm(bias, states[state[:, 0].long()], weight.T)

    times: dict[str, list[float]] = {"recrl": [], "bare": []}
    recrl = bare = ranks = None
    for repeat in range(args.repeats + 1):  # the first round warms up and is not counted
        start = time.perf_counter()
        recrl = evaluate(score_fn, eval_data, config)
        seconds = time.perf_counter() - start
        if repeat:
            times["recrl"].append(seconds)
        start = time.perf_counter()
        ranks = bare_ranks(network, data, args.bare_chunk, states)
        bare = bare_metrics(ranks, data, config.ks)
        seconds = time.perf_counter() - start
        if repeat:
            times["bare"].append(seconds)

    recrl_metrics = {k: v for k, v in recrl.items() if k not in ("eval_rows", "eval_seconds")}
    different = sorted(k for k in bare if not same(recrl_metrics[k], bare[k]))
    reference, recrl_ranks = per_batch_sums_metrics(score_fn, eval_data, config)  # untimed
    drift = max(abs(recrl_metrics[k] - v) for k, v in reference.items() if not math.isnan(v))
    same_ranks = bool(torch.equal(recrl_ranks, ranks))
    median = {name: statistics.median(t) for name, t in times.items()}
    ratio = median["recrl"] / median["bare"]
    report = {
        "split": args.split, "scores": args.scores, "events": data.num_rows, "items": data.n_items,
        "threads": torch.get_num_threads(), "batch_size": args.batch_size,
        "bare_chunk": args.bare_chunk, "repeats": args.repeats,
        "recrl_s": [round(t, 3) for t in times["recrl"]],
        "bare_s": [round(t, 3) for t in times["bare"]],
        "ratio": round(ratio, 3),
        "ratio_best": round(min(times["recrl"]) / min(times["bare"]), 3),
        "metrics_identical": not different, "metrics_different": different,
        "ranks_identical": same_ranks,
        "max_abs_diff_vs_per_batch_sums": drift,
        "hr_20_purchase": recrl["hr_20_purchase"], "ndcg_20_purchase": recrl["ndcg_20_purchase"],
    }  # fmt: skip
    print(json.dumps(report))
    ok = ratio <= RATIO_TARGET and not different and same_ranks
    print(
        f"{args.split} ({args.scores}): {data.num_rows} events x {data.n_items} items, "
        f"{torch.get_num_threads()} thread(s): recrl {median['recrl']:.2f} s, bare "
        f"{median['bare']:.2f} s (medians of {args.repeats}) -> ratio {ratio:.3f} (target <= "
        f"{RATIO_TARGET}); metrics identical: {not different} -> {'OK' if ok else 'MISSED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
