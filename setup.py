"""The package list for pyproject.toml's package-dir mapping: every package under the card's
folders, named under ``recrl`` (a new subfolder needs no edit here)."""

from setuptools import find_packages, setup

FOLDERS = ("pipelines", "models", "envs")

setup(
    packages=["recrl"]
    + [f"recrl.{name}" for name in find_packages(include=[f"{f}*" for f in FOLDERS])]
)
