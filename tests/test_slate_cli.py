"""`recrl slate` end to end on a small generated log (greedy, random and DQN-Off, no
MLflow; the RLlib-trained policies are tested in test_slate_q_rllib.py)."""

from __future__ import annotations

import csv

from recrl.envs.generated_dataset import write_generated_dataset
from recrl.envs.session_generator import SessionGeneratorConfig
from recrl.pipelines.cli import main


def test_slate_command_writes_csv_and_png_per_policy(tmp_path, one_torch_thread, capsys):
    write_generated_dataset(SessionGeneratorConfig(n_sessions=400, n_items=60), tmp_path / "gen")
    sets, um = str(tmp_path / "sets"), tmp_path / "um"
    assert (
        main(
            [
                "usermodel",
                "build",
                "--source",
                "generic",
                "--input",
                str(tmp_path / "gen" / "sessions"),
                "--output",
                sets,
            ]
        )
        == 0
    )
    assert main(["usermodel", "fit", "--data", sets, "--out", str(um), "--epochs", "1",
                 "--no-baselines", "--no-mlflow"]) == 0  # fmt: skip
    results = {}
    for policy in ("greedy", "random", "offline"):
        code = main(["slate", "--policy", policy, "--k", "3", "--data", sets,
                     "--user-model", str(um / "user_model.pt"), "--seeds", "0", "1",
                     "--episodes", "8", "--episode-length", "4", "--out", str(tmp_path / "out"),
                     "--steps", "40", "--batch-size", "16",
                     "--no-mlflow"])  # fmt: skip
        assert code == 0
        with open(tmp_path / "out" / f"slate_{policy}_k3.csv") as f:
            rows = list(csv.DictReader(f))
        assert [r["seed"] for r in rows] == ["0", "1"]
        assert all(0.0 <= float(r["ctr"]) <= 1.0 for r in rows)
        assert (tmp_path / "out" / f"slate_{policy}_k3.png").stat().st_size > 0
        results[policy] = rows
    assert "reward" in capsys.readouterr().out
