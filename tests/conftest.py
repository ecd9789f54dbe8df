"""Shared fixtures: one Ray runtime for the whole session, paths to the shared samples."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(
    os.environ.get("RECRL_SHARED_DATA", Path(__file__).parents[2] / "shared" / "data")
)


def shared_dataset(name: str) -> Path:
    """Path of a sample under ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is absent (real data samples live outside the repository)")
    return path


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray runtime shared by every test that needs one.

    Logical CPUs are set to 4 so that Ray Data and remote tasks never wait for each other on
    a 2-core CI machine; the object store is kept small.
    """
    import ray
    from recrl.pipelines.ray_runtime import ensure_ray

    os.environ.pop("RAY_ADDRESS", None)
    ensure_ray(num_cpus=4, object_store_memory=512 * 1024 * 1024)
    yield ray
    ray.shutdown()


@pytest.fixture
def one_torch_thread():
    """Small batches on a shared 2-core machine run fastest on one torch thread."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- test tiers ---------------------------------------------------------------------------
# `pytest -m unit` (`make test-fast`) runs without Ray or services. A test is `service` when
# it starts PostgreSQL, an MLflow server or Chromium (marked where it does), `ray` when it
# starts a Ray runtime (it uses `ray_session`, or is marked because its commands start one
# themselves), and `unit` otherwise; the marker is added here, so no test can be in no tier.


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "ray_session" in item.fixturenames and not item.get_closest_marker("ray"):
            item.add_marker(pytest.mark.ray)
        if not (item.get_closest_marker("ray") or item.get_closest_marker("service")):
            item.add_marker(pytest.mark.unit)


# --- never pass with zero tests ---------------------------------------------------------

_passed = 0


def pytest_runtest_logreport(report):
    global _passed
    if report.when == "call" and report.passed:
        _passed += 1


def pytest_sessionfinish(session, exitstatus):
    """Fail a run in which no test passed (nothing collected, or everything skipped):
    pytest's exit code 5 or 0 would otherwise let CI go green on no evidence."""
    if exitstatus in (0, 5) and _passed == 0 and not session.config.option.collectonly:
        session.exitstatus = 1
