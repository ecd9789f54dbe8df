#!/usr/bin/env bash
# Every long run behind the CCQL comparison in docs/results.md, one sweep after the other
# (one heavy job at a time: on two cores parallel sweeps only slow each other down):
#
#   1. ccql_budget         six variants, seed 0, 6,000 updates     tune_configs/ccql_budget.yaml
#   2. ccql_budget_seed1   sasrec, sasrec_co, sasrec_ccql, seed 1
#   3. co_weight           sasrec_co, sasrec_ccql at λ_co = 1.0, seeds 0 and 1
#   4. click_only          sasrec, sasrec_ccql on the RC15 sample without its purchases
#   5. negatives_budget    n_neg ∈ {1, 10, 50} × snqn, sa2c, sasrec_ccql, seed 0
#
#   nohup benchmarks/ccql_study.sh > runs/ccql_study.log 2>&1 &
#
# Run it again after an interruption: a finished sweep (its DONE file) is skipped and an
# interrupted one continues with `recrl tune --resume` (finished trials are kept, running
# ones restart from their last checkpoint). Each sweep is a parent run in MLflow with a child
# run per trial. Environment: RECRL (the recrl command), RC15 (the raw sample), DATA and
# CLICKS (the prepared datasets, built here when missing), STORAGE (the sweeps folder),
# STEPS (total updates; 6000). Extra arguments go to every `recrl tune`.
# Summarise afterwards: python benchmarks/ccql_results.py
set -euo pipefail
RECRL=${RECRL:-recrl}
RC15=${RC15:-../shared/data/yoochoose-rc15-sample}
DATA=${DATA:-data/rc15}
CLICKS=${CLICKS:-data/rc15_clicks}
STORAGE=${STORAGE:-runs/sweeps}
STEPS=${STEPS:-6000}

if [[ ! -f "$DATA/meta.json" ]]; then
  "$RECRL" prepare --source yoochoose --input "$RC15" --output "$DATA"
fi
if [[ ! -f "$CLICKS/meta.json" ]]; then  # the clicks file alone: a click-only log
  "$RECRL" prepare --source yoochoose --input "$RC15/sample_clicks.csv" --output "$CLICKS"
fi

sweep() {  # sweep NAME STUDY [--set ...]
  local name=$1 study=$2
  shift 2
  if [[ -f "$STORAGE/$name/DONE" ]]; then
    echo "=== $name: done, skipped"
    return
  fi
  local mode=()
  if [[ -d "$STORAGE/$name" ]]; then
    mode=(--resume)
  fi
  echo "=== $name ${mode[*]} ($(date -u +%H:%M:%S))"
  "$RECRL" tune "$study" --storage "$STORAGE" --set "name=$name" --set "total_steps=$STEPS" \
    "$@" "${mode[@]}" "${EXTRA[@]}"
  touch "$STORAGE/$name/DONE"
}

EXTRA=("$@")
sweep ccql_budget tune_configs/ccql_budget.yaml --set "data=$DATA"
sweep ccql_budget_seed1 tune_configs/ccql_budget.yaml --set "data=$DATA" \
  --set variants=sasrec,sasrec_co,sasrec_ccql --set seeds=1
sweep co_weight tune_configs/co_weight.yaml --set "data=$DATA"
sweep click_only tune_configs/ccql_budget.yaml --set "data=$CLICKS" \
  --set variants=sasrec,sasrec_ccql --set metric=eval/ndcg_20_click
sweep negatives_budget tune_configs/negatives.yaml --set "data=$DATA" --set seeds=0 \
  --set 'search={n_neg: {grid: [1, 10, 50]}}'
echo "=== all sweeps done ($(date -u +%H:%M:%S)); summary: python benchmarks/ccql_results.py"
