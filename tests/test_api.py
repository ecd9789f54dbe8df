"""The Python API: ``recrl``'s public names, and the examples in `recrl.api`'s docstrings,
run as written (in order, in one scratch folder: each example reads what the one before
it wrote)."""

from __future__ import annotations

import doctest
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import recrl
import recrl.api

REPO = Path(__file__).resolve().parents[1]


def test_import_recrl_is_cheap_and_names_the_api():
    # the jobs' heavy imports (Ray, torch, MLflow) wait for the first job
    code = "import sys, recrl; print([m for m in ('ray', 'torch', 'mlflow') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    for name in ("prepare", "train", "tune", "bandit", "slate", "usermodel"):
        assert callable(getattr(recrl, name)) and getattr(recrl, name).__doc__
    assert recrl.TrainConfig.__name__ == "TrainConfig"


def test_the_api_examples_run(ray_session, tmp_path, monkeypatch):
    shutil.copytree(REPO / "tune_configs", tmp_path / "tune_configs")
    monkeypatch.chdir(tmp_path)
    # Under pytest the root logger passes DEBUG records, and Ray Data's operator-metrics
    # dumps at that level would land in the examples' captured output.
    ray_data_logger = logging.getLogger("ray.data")
    monkeypatch.setattr(ray_data_logger, "level", logging.INFO)
    finder = doctest.DocTestFinder()
    tests = sorted(finder.find(recrl.api), key=lambda t: t.lineno or 0)  # in file order
    assert len([t for t in tests if t.examples]) >= 4
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    failed, attempted = runner.summarize(verbose=False)
    assert attempted > 0 and failed == 0
