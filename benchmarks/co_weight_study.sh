#!/usr/bin/env bash
# The contrastive weight λ_co of the SASRec-CCQL paper's eq. (4). The paper
# adds L_CO with weight 1; the presets use CO_WEIGHT = 0.1 (models/sasrec/objective_config.py).
# This runs both weights for both contrastive variants, seeds 0 and 1, 6,000 updates each:
# 8 `recrl train` jobs, one after the other, one MLflow run each (experiment "co_weight").
#
#   mkdir -p runs && DATA=data/rc15 nohup benchmarks/co_weight_study.sh > runs/co_weight.log 2>&1 &
#   DATA=data/rc15 STEPS=300 benchmarks/co_weight_study.sh --num-gpus-per-learner 1  # quick
#
# RECRL=.venv/bin/recrl if the venv is not active. Extra arguments go to every `recrl train`
# (e.g. --num-gpus-per-learner 1; on a resume only --steps/--no-mlflow are allowed). Run it again
# after an interruption: finished runs are skipped, interrupted ones resume from their last
# checkpoint. The last lines compare test NDCG@20 / HR@20 (purchase) per run; the val curves
# are in MLflow (`mlflow ui`, experiment co_weight) and each run's stability.png.
# Afterwards: set CO_WEIGHT to the better value (1.0 unless the runs say otherwise) and
# write the numbers next to it.
set -euo pipefail
DATA=${DATA:-data/rc15}
STEPS=${STEPS:-6000}
OUT=${OUT:-runs/co_weight}
RECRL=${RECRL:-recrl}
mkdir -p "$OUT"
for variant in sasrec_co sasrec_ccql; do
  for weight in 1.0 0.1; do
    for seed in 0 1; do
      dir="$OUT/$variant-w$weight-s$seed"
      if [[ -f "$dir/DONE" ]]; then
        echo "skip $dir (done)"
        continue
      fi
      if [[ -d "$dir/checkpoint" ]]; then
        args=(--resume "$dir")
      else
        args=(--variant "$variant" --data "$DATA" --steps "$STEPS" --eval-interval 500
              --set "co_weight=$weight" --set "seed=$seed" --set experiment=co_weight
              --run-dir "$dir")
      fi
      echo "=== $variant co_weight=$weight seed=$seed ==="
      mkdir -p "$dir"
      "$RECRL" train "${args[@]}" "$@" 2>&1 | tee "$dir/train.log"
      touch "$dir/DONE"
    done
  done
done
echo "=== test split, purchase @20 (variant, co_weight, seed: HR, NDCG) ==="
for log in "$OUT"/*/train.log; do
  run=$(basename "$(dirname "$log")")
  hr=$(awk '$1 == "hr_20_purchase" {print $2}' "$log" | tail -1)
  ndcg=$(awk '$1 == "ndcg_20_purchase" {print $2}' "$log" | tail -1)
  echo "$run: hr_20_purchase=$hr ndcg_20_purchase=$ndcg"
done
