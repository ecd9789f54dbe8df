"""The built wheel: recrl is the only top-level name it installs, and it runs from there.

The wheel is built from this checkout (``pip wheel --no-deps``), unpacked into a folder
that comes first on ``PYTHONPATH``, and imported from a directory outside the checkout:
``recrl`` and its subpackages then come from the wheel, and ``models`` / ``pipelines`` /
``envs`` do not exist as top-level modules.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


SOURCES = ("recrl", "pipelines", "models", "envs", "tune_configs", "pyproject.toml", "setup.py",
           "README.md")  # fmt: skip
"""What the wheel is built from, copied out so the build leaves nothing in the checkout."""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(
                REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy(REPO / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--quiet", "--wheel-dir", str(out), str(source)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    (path,) = out.glob("recrl-*.whl")
    return path


def test_the_wheel_installs_one_top_level_name_and_every_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    # metadata and data files (the tune configs under share/) besides one importable name
    assert {top for top in tops if not top.endswith((".dist-info", ".data"))} == {"recrl"}
    folders = {"pipelines", "models", "envs"}
    on_disk = {
        str(init.parent.relative_to(REPO))
        for folder in folders
        for init in (REPO / folder).rglob("__init__.py")
    }
    packaged = {
        name.removeprefix("recrl/").removesuffix("/__init__.py")
        for name in names
        if name.endswith("/__init__.py") and name != "recrl/__init__.py"
    }
    assert packaged == on_disk  # every package folder is in the wheel, none twice
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "recrl = recrl.pipelines.cli:main" in text


def test_the_installed_wheel_imports_as_recrl_only(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site)}
    probe = (
        "import importlib.util, recrl, recrl.pipelines.cli as cli;"
        "print(cli.__file__);"
        "print([m for m in ('models', 'pipelines', 'envs') if importlib.util.find_spec(m)])"
    )
    run = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    cli_file, generic = run.stdout.strip().splitlines()
    assert Path(cli_file).is_relative_to(site)
    assert generic == "[]"
    helped = subprocess.run([sys.executable, "-m", "recrl.pipelines.cli", "--help"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, check=False)  # fmt: skip
    assert helped.returncode == 0 and "usage: recrl" in helped.stdout
