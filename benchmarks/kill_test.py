"""Kill test: ``recrl prepare --overwrite`` and ``recrl train`` killed
with SIGKILL at random moments.

prepare: a dataset is prepared once; then ``recrl prepare --overwrite`` with another split
seed is started KILLS times and SIGKILLed at a random moment of its run. After every kill
the output folder must hold a whole dataset: byte-for-byte the old one (tree digest), or,
when the kill came after the new one was committed, the complete new one (`recrl stats`
reads it and its seed is the new one).

train: an uninterrupted reference run (and one with another seed, for the seed noise);
then KILLS runs each SIGKILLed at a random moment between the reference's first and last
checkpoints (while it trains; start-up and the final test scoring are left out), and
continued with ``recrl train --resume RUN_DIR`` until they finish. With one learner a
resumed run must end with the reference's val metrics exactly (the data order is fixed by
the seed and resume restores the stream position); the gap is reported next to the seed
noise.

  .venv/bin/python benchmarks/kill_test.py --kills 10
  .venv/bin/python benchmarks/kill_test.py --kills 3 --steps 300 --eval-interval 30  # quick

Every process is started in its own session and killed with its whole session (the Ray
processes it started included); RAY_ADDRESS=local is set for them.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
METRICS = ("hr_20_click", "ndcg_20_click", "hr_20_purchase")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])  # fmt: skip
    parser.add_argument("--kills", type=int, default=10, help="kills of each command (10)")
    parser.add_argument("--workdir", type=Path, default=Path("runs/kill_test"), help="folder")
    parser.add_argument("--sessions", type=int, default=600, help="generated sessions (600)")
    parser.add_argument("--steps", type=int, default=40, help="training updates (40)")
    parser.add_argument("--eval-interval", type=int, default=10, help="updates per eval (10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments (0)")
    parser.add_argument("--skip-prepare", action="store_true", help="only the train kills")
    parser.add_argument("--skip-train", action="store_true", help="only the prepare kills")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    gen, data = work / "generated", work / "prepared"
    if not (gen / "generator.json").is_file():
        recrl("generate", "--out", gen, "--sessions", args.sessions, "--items", 120)
    if not (data / "meta.json").is_file():
        recrl("prepare", "--source", "generic", "--input", gen / "sessions", "--output", data)
    report: dict = {}
    if not args.skip_prepare:
        report["prepare"] = prepare_kills(args, rng, gen, data)
    if not args.skip_train:
        report["train"] = train_kills(args, rng, data, work)
    (work / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    ok = report.get("prepare", {}).get("ok", True) and report.get("train", {}).get("ok", True)
    return 0 if ok else 1


def prepare_kills(args, rng: random.Random, gen: Path, data: Path) -> dict:
    command = ["prepare", "--source", "generic", "--input", gen / "sessions", "--output", data,
               "--overwrite"]  # fmt: skip
    start = time.monotonic()
    recrl(*command, "--seed", 1000)  # how long one takes
    seconds = time.monotonic() - start
    outcomes = []
    for i in range(args.kills):
        before = tree_digest(data)
        seed = 2000 + i
        at = rng.uniform(0.2, seconds)
        code = run_killed([*command, "--seed", seed], at)
        after = tree_digest(data)
        if after == before:
            outcome = "old intact"
        elif dataset_seed(data) == seed:
            outcome = "new complete"
        else:
            outcome = "DAMAGED"
        outcomes.append({"kill_at_s": round(at, 2), "exit": code, "outcome": outcome})
        print(f"prepare kill {i + 1}/{args.kills} at {at:.1f}s: {outcome}", flush=True)
    return {"seconds_per_prepare": round(seconds, 1), "kills": outcomes,
            "ok": all(o["outcome"] != "DAMAGED" for o in outcomes)}  # fmt: skip


def dataset_seed(data: Path) -> int | None:
    """The split seed of a whole dataset that ``recrl stats`` reads, else None."""
    done = subprocess.run(recrl_argv("stats", data, "--json"), capture_output=True, text=True,
                          env=env(), cwd=REPO)  # fmt: skip
    if done.returncode != 0:
        return None
    meta = json.loads(done.stdout)
    return (meta.get("settings") or {}).get("seed")


def train_kills(args, rng: random.Random, data: Path, work: Path) -> dict:
    base = ["train", "--variant", "sasrec_ccql", "--data", data, "--steps", args.steps,
            "--eval-interval", args.eval_interval, "--set", "hidden_size=16",
            "--set", "batch_size=32", "--no-mlflow"]  # fmt: skip
    first_checkpoint, last_checkpoint, seconds = timed_run(base, work / "reference", args.steps)
    reference = final_metrics(work / "reference")
    other_seed = final_metrics(train_to_end([*base, "--set", "seed=1"], work / "seed1"))
    noise = {k: round(abs(reference[k] - other_seed[k]), 4) for k in METRICS}
    runs = []
    for i in range(args.kills):
        run_dir = work / f"killed-{i}"
        at = rng.uniform(first_checkpoint, last_checkpoint)
        run_killed([*base, "--run-dir", run_dir, "--overwrite"], at)
        updates = checkpoint_updates(run_dir)
        resumed = (run_dir / "config.json").is_file()
        if resumed:
            recrl("train", "--resume", run_dir)
        else:  # killed before the run folder was written: nothing to resume
            recrl(*base, "--run-dir", run_dir, "--overwrite")
        final = final_metrics(run_dir)
        gap = {k: round(abs(final[k] - reference[k]), 4) for k in METRICS}
        runs.append({"kill_at_s": round(at, 2), "checkpoint_update_at_kill": updates,
                     "resumed": resumed, "final": final, "gap_to_reference": gap})  # fmt: skip
        print(f"train kill {i + 1}/{args.kills} at {at:.1f}s (checkpoint {updates}): "
              f"gap {gap}", flush=True)  # fmt: skip
    worst = {k: max((r["gap_to_reference"][k] for r in runs), default=0.0) for k in METRICS}
    exact = all(r["final"] == reference for r in runs)
    return {"seconds_per_run": round(seconds, 1), "first_checkpoint_s": round(first_checkpoint, 1),
            "last_checkpoint_s": round(last_checkpoint, 1),
            "reference": reference, "other_seed": other_seed, "seed_noise": noise,
            "worst_gap": worst, "all_identical_to_reference": exact, "runs": runs,
            "ok": exact and all(r["final"]["updates"] == args.steps for r in runs)}  # fmt: skip


def timed_run(base: list, run_dir: Path, steps: int) -> tuple[float, float, float]:
    """Train to the end; seconds until the first checkpoint, until the checkpoint of the
    last update, and in all (the first two polled every 0.1 s)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir.with_name(run_dir.name + ".log")
    start = time.monotonic()
    first = last = None
    with log.open("w") as stderr:
        process = subprocess.Popen(recrl_argv(*base, "--run-dir", run_dir, "--overwrite"),
                                   env=env(), cwd=REPO, stdout=subprocess.DEVNULL,
                                   stderr=stderr)  # fmt: skip
        while process.poll() is None and last is None:
            updates = checkpoint_updates(run_dir)
            if updates is not None and first is None:
                first = time.monotonic() - start
            if updates == steps:
                last = time.monotonic() - start
            time.sleep(0.1)
        process.wait()
    if process.returncode != 0 or first is None or last is None:
        raise SystemExit(f"the reference run failed:\n{log.read_text()[-3000:]}")
    return first, last, time.monotonic() - start


def train_to_end(base: list, run_dir: Path) -> Path:
    recrl(*base, "--run-dir", run_dir, "--overwrite")
    return run_dir


def checkpoint_updates(run_dir: Path) -> int | None:
    for name in ("checkpoint", "checkpoint.old"):
        progress = run_dir / name / "progress.json"
        with contextlib.suppress(OSError, ValueError):  # swapped away while being read
            return json.loads(progress.read_text())["updates"]
    return None


def final_metrics(run_dir: Path) -> dict:
    progress = json.loads((run_dir / "checkpoint" / "progress.json").read_text())
    last = progress["val_history"][-1]
    return {"updates": progress["updates"], **{k: round(last[k], 4) for k in METRICS}}


def recrl_argv(*argv) -> list[str]:
    return [sys.executable, "-m", "recrl.pipelines.cli", "-q", *(str(a) for a in argv)]


def env() -> dict:
    return {**os.environ, "RAY_ADDRESS": "local", "PYTHONUNBUFFERED": "1"}


def recrl(*argv) -> None:
    done = subprocess.run(recrl_argv(*argv), env=env(), cwd=REPO, capture_output=True,
                          text=True)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"recrl {' '.join(map(str, argv))} failed:\n{done.stderr[-3000:]}")


def run_killed(argv: list, at_s: float) -> int | None:
    """Start ``recrl ARGV`` in a new session, SIGKILL the session after ``at_s`` seconds
    (unless it ended first); its exit code (None when killed)."""
    process = subprocess.Popen(recrl_argv(*argv), env=env(), cwd=REPO, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        return process.wait(timeout=at_s)
    except subprocess.TimeoutExpired:
        kill_session(process.pid)
        process.wait()
        return None


def kill_session(sid: int) -> None:
    """SIGKILL every process of session ``sid`` (the command and the Ray processes it
    started), then wait until none is left."""
    for _ in range(50):
        members = [pid for pid in _pids() if _sid(pid) == sid]
        if not members:
            return
        for pid in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _sid(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under ``root`` (relative path -> SHA-256)."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
