"""Human-readable summaries printed by the `recrl` commands."""

from __future__ import annotations

import math

from recrl.pipelines.prepare.schema import INVALID_REASONS


def format_train_result(config, result) -> str:
    """Test metrics next to the popularity baseline, and where to look next."""
    from recrl.pipelines.tracking import dashboard_command

    lines = [
        f"{config.variant} after {result.updates} updates - test split:",
        f"{'metric':<18} {config.variant:>12} {'popularity':>12}",
    ]
    for k in (5, 10, 20):
        for name in (f"hr_{k}_click", f"ndcg_{k}_click", f"hr_{k}_purchase", f"ndcg_{k}_purchase"):
            model = result.test_metrics.get(name, float("nan"))
            popular = result.popularity_test_metrics.get(name, float("nan"))
            if math.isnan(model) and math.isnan(popular):
                continue  # e.g. purchase metrics of click-only data: they cannot exist
            lines.append(f"{name:<18} {model:>12.4f} {popular:>12.4f}")
    lines.append(f"evaluation took {result.eval_share:.0%} of the job's time")
    learners = result.learners
    if learners and result.seconds_training:
        nodes = len({learner["node_id"] for learner in learners})
        lines.append(
            f"training: {result.updates / result.seconds_training:.1f} updates/s on "
            f"{len(learners)} learner(s), {nodes} node(s), {learners[0]['device']}"
        )
    lines.append(f"checkpoint: {result.checkpoint}; figure: {result.run_dir / 'stability.png'}")
    if config.tracking:
        command = dashboard_command(experiment_id=result.experiment_id)
        lines.append(f"MLflow run {result.run_id}: open the dashboard with `{command}`")
    return "\n".join(lines)


def format_stats(meta: dict) -> str:
    """A human summary of a dataset's meta.json."""
    rows = meta["rows"]
    lines = [
        f"source {meta['source']}: {meta['n_items']} items (pad_id {meta['pad_id']}), "
        f"state length L={meta['L']}",
        f"rows: {rows['input']} input = {rows['kept']} kept + {rows['dropped_total']} dropped",
    ]
    for reason, count in rows["dropped"].items():
        if count:
            share = count / max(rows["input"], 1)
            lines.append(f"  dropped {reason:<20} {count:>10}  ({share:.2%})")
    bad = sum(rows["dropped"].get(reason, 0) for reason in INVALID_REASONS)
    if bad:
        lines.append(f"  bad values in total {bad:>18}  ({bad / max(rows['input'], 1):.2%})")
    time_format = meta.get("timestamp_format", {}).get("format")
    if time_format:
        lines.append(f"timestamps: {time_format}")
    # Click-only data has no purchase column: a column of zeros would read as a result.
    has_buys = any(split["purchases"] for split in meta["splits"].values())
    header = f"{'split':<6} {'sessions':>9} {'transitions':>12} {'clicks':>10}"
    lines.append(header + (f" {'purchases':>10}" if has_buys else ""))
    for name, split in meta["splits"].items():
        line = f"{name:<6} {split['sessions']:>9} {split['transitions']:>12} {split['clicks']:>10}"
        lines.append(line + (f" {split['purchases']:>10}" if has_buys else ""))
    if not has_buys:
        lines.append("no purchase events: click-only data")
    counts = meta.get("item_counts", [])
    if counts:
        top = sorted(counts, reverse=True)
        top_share = sum(top[: max(1, len(top) // 10)]) / max(sum(top), 1)
        lines.append(f"item popularity: top 10% of items hold {top_share:.1%} of events")
    return "\n".join(lines)
