"""Off-policy estimates of a trained SASRec model's value on synthetic sequential logs with
known truth (design.md §9.6); prints the Markdown tables for docs/results.md.

    recrl generate --out runs/ope_sasrec/gen --sessions 4096 --items 500
    recrl prepare --source generic --input runs/ope_sasrec/gen/sessions \\
        --output runs/ope_sasrec/prepared
    recrl train --variant sasrec --data runs/ope_sasrec/prepared --steps 300 \\
        --set hidden_size=32 --run-dir runs/ope_sasrec/sasrec        # tracking on: model/
    .venv/bin/python benchmarks/ope_sasrec_bench.py --generated runs/ope_sasrec/gen \\
        --model runs/ope_sasrec/sasrec --sessions 1000 --logs 50

The logs (`recrl.envs.synthetic_session_log`) are drawn in the world the training sessions
came from, over ``--sessions`` sessions after them (histories the model never saw). Targets:
the model as a softmax over each row's candidates, greedy (top-1) and uniform over its top 3;
a uniform choice among the candidates; and the logging policy itself. The first table is
one log (seed 0) with 95 % intervals; the second is, over ``--logs`` logs, each estimator's
bias (mean of estimate − truth, truth exact on each log's contexts), its standard error, RMSE
and the coverage of its interval. ``--write-log`` also writes the seed-0 log, for
``recrl ope --log``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
from recrl.envs.synthetic_session_log import (
    SessionLogConfig,
    SyntheticSessionLog,
    draw_session_log,
    session_contexts,
    world_of,
)
from recrl.models.ope import ESTIMATORS
from recrl.models.ope.candidates import CandidateSets, catalogue_sets, vocabulary_index
from recrl.models.ope.policies import TargetPolicyConfig
from recrl.pipelines.ope.config import OPEConfig
from recrl.pipelines.ope.job import Evaluation, format_table, reward_predictions
from recrl.pipelines.ope.sasrec_policy import (
    CandidateScores,
    load_policy_model,
    score_candidates,
    with_id_type_of,
)
from recrl.pipelines.ope.session_job import SessionInputs, evaluate_target, session_inputs

MODEL_POLICIES = {
    "model softmax": TargetPolicyConfig(policy="softmax", temperature=1.0),
    "model top-1": TargetPolicyConfig(policy="top_k", top_k=1),
    "model top-3": TargetPolicyConfig(policy="top_k", top_k=3),
}


def slot_scores(all_scores: CandidateScores, catalogue: CandidateSets, sets: CandidateSets):
    """The model's scores of one log's candidate slots, read from its scores of every item."""
    column = vocabulary_index(catalogue.vocabulary, sets.vocabulary)[np.maximum(sets.items, 0)]
    rows = np.arange(len(sets.shown))[:, None]
    scorable = sets.mask & all_scores.scorable[rows, column]
    scores = np.where(scorable, all_scores.scores[rows, column], -np.inf)
    return CandidateScores(scores, scorable, all_scores.unknown_history_items,
                           all_scores.rows_with_unknown_history)  # fmt: skip


def targets(inputs: SessionInputs, log: SyntheticSessionLog, kept: np.ndarray) -> dict:
    """Target name -> its distribution [n, C] on the kept rows."""
    out = {
        name: p.distribution(inputs.scores, inputs.scorable) for name, p in MODEL_POLICIES.items()
    }
    mask = inputs.sets.mask
    out["uniform"] = mask / mask.sum(axis=1, keepdims=True)
    out["logging policy"] = log.behaviour[kept]
    return out


def evaluate_log(log, all_scores, catalogue, config: OPEConfig) -> dict[str, Evaluation]:
    sets = log.candidate_sets()
    scored = slot_scores(all_scores, catalogue, sets)
    kept = np.flatnonzero(scored.scorable.any(axis=1))
    history = log.contexts.history
    inputs = session_inputs(history, sets, log.reward, log.propensity, scored, log.q_true)
    predictions = reward_predictions(
        inputs.feedback, inputs.features, config.reward_model, config.estimators,
        n_items=len(inputs.sets.vocabulary), seed=config.seed,
    )  # fmt: skip
    return {
        name: evaluate_target(inputs, name.replace(" ", "_"), target, config, predictions)
        for name, target in targets(inputs, log, kept).items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generated", type=Path, required=True, help="recrl generate's --out")
    parser.add_argument("--model", required=True, help="the run folder of a tracked recrl train")
    parser.add_argument("--sessions", type=int, default=1000, help="sessions per log")
    parser.add_argument("--logs", type=int, default=50, help="logs for the bias table")
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples, first table")
    parser.add_argument("--logs-bootstrap", type=int, default=200, help="resamples, bias table")
    parser.add_argument("--tau", type=float, default=20.0, help="switch-DR threshold")
    parser.add_argument("--write-log", type=Path, help="write the seed-0 log here (.parquet)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    world = world_of(args.generated)
    log_config = SessionLogConfig(sessions=args.sessions, skip_sessions=world.n_sessions)
    start = time.perf_counter()
    contexts = session_contexts(world, log_config)
    recommender = with_id_type_of(load_policy_model(args.model), contexts.world.item_ids)
    # the contexts are the same in every log: score every item once, read each log's slots
    ids = contexts.world.item_ids
    catalogue = catalogue_sets(np.repeat(ids[:1], contexts.n), ids)  # its shown slot unused
    all_scores = score_candidates(recommender, contexts.history, catalogue)
    config = OPEConfig(n_bootstrap=args.bootstrap, switch_tau=args.tau, tracking=False)
    first = draw_session_log(contexts, log_config, seed=0)
    if args.write_log is not None:
        first.write(args.write_log)
    one = evaluate_log(first, all_scores, catalogue, config)
    result = next(iter(one.values()))
    print(
        f"\none log (seed 0): {result.rows} rows of {args.sessions} unseen sessions, "
        f"{log_config.n_candidates} candidates per row from {world.n_items} items; left out "
        f"{result.excluded}; mean logged reward {result.log_value * 100:.2f}; "
        f"{time.perf_counter() - start:.0f}s\n"
    )
    print(format_table(list(one.values())))
    print("values are click rates in % (truth: exact on the log's contexts), 95 % intervals.")

    config = dataclasses.replace(config, n_bootstrap=args.logs_bootstrap)
    errors: dict[tuple[str, str], list[float]] = {}
    covered: dict[tuple[str, str], list[bool]] = {}
    start = time.perf_counter()
    for seed in range(args.logs):
        found = evaluate_log(draw_session_log(contexts, log_config, seed), all_scores, catalogue,
                             config)  # fmt: skip
        for target, evaluation in found.items():
            for name, interval in evaluation.estimates.items():
                errors.setdefault((target, name), []).append(interval.value - evaluation.truth)
                covered.setdefault((target, name), []).append(
                    interval.low <= evaluation.truth <= interval.high
                )
    print(f"\n{args.logs} logs (seeds 0..{args.logs - 1}), {args.logs_bootstrap} resamples each; "
          f"{time.perf_counter() - start:.0f}s\n")  # fmt: skip
    print("| target | estimator | bias | s.e. of bias | RMSE | 95 % interval coverage |")
    print("|---|---|---|---|---|---|")
    for (target, name), e in errors.items():
        e = np.array(e) * 100
        print(
            f"| {target} | {name} | {e.mean():+.2f} | {e.std(ddof=1) / np.sqrt(len(e)):.2f} | "
            f"{np.sqrt((e**2).mean()):.2f} | {np.mean(covered[(target, name)]):.2f} |"
        )
    print("\nbias, s.e. and RMSE in click-rate points (%); estimators:", ", ".join(ESTIMATORS))


if __name__ == "__main__":
    main()
