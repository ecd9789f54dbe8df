"""recrl: distributed offline reinforcement learning for sequential recommendation, on Ray.

The repository keeps the card's top-level folders (``pipelines/``, ``models/``, ``envs/``);
installed, they are this package's subpackages ``recrl.pipelines``, ``recrl.models`` and
``recrl.envs``, so recrl adds one name, ``recrl``, to an environment. In a source checkout
(an editable install, or the working directory ``ray job submit --working-dir .`` uploads)
the same names resolve to the checkout's folders: this package's search path gains the
checkout root, so a job runs the code it was submitted with.
"""

from __future__ import annotations

from pathlib import Path


def _checkout_root() -> Path | None:
    """The repository root when this file sits in a recrl checkout (beside its
    ``pyproject.toml`` and ``pipelines/``); None when installed (site-packages)."""
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "pipelines" / "cli.py").is_file():
        return root
    return None


_root = _checkout_root()
if _root is not None and str(_root) not in __path__:
    __path__.append(str(_root))
del _root

# The Python API (`recrl.api`) and the typed configs it takes, imported on first use so that
# ``import recrl`` stays cheap (Ray and torch load with the first job).
_EXPORTS = {
    "prepare": "recrl.api",
    "train": "recrl.api",
    "tune": "recrl.api",
    "bandit": "recrl.api",
    "slate": "recrl.api",
    "usermodel": "recrl.api",
    "ope": "recrl.api",
    "PrepareConfig": "recrl.pipelines.prepare.config",
    "TrainConfig": "recrl.pipelines.sasrec.config",
    "StudyConfig": "recrl.pipelines.tune.study",
    "BanditRunConfig": "recrl.pipelines.bandit.config",
    "SlateJob": "recrl.pipelines.slate.config",
    "CDQNConfig": "recrl.pipelines.slate.config",
    "UserModelJob": "recrl.pipelines.usermodel.job",
    "UserModelConfig": "recrl.models.user_model.config",
    "OPEConfig": "recrl.pipelines.ope.config",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'recrl' has no attribute {name!r}")
