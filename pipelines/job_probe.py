"""The probe job `recrl submit` runs before the real one: can the cluster's Python import
what recrl needs? Only the standard library is imported at the top, so the probe itself
runs under any Python and prints one line that `recrl.pipelines.jobs` reads back."""

from __future__ import annotations

import importlib
import sys

MARKER = "RECRL_PROBE"
"""Start of the probe's one output line: ``RECRL_PROBE ok PYTHON`` or
``RECRL_PROBE missing PYTHON MODULE: ERROR``."""
MODULES = ("pyarrow", "ray", "torch", "recrl.pipelines.cli")
"""What a recrl job imports first; ``recrl.pipelines.cli`` pulls in the rest."""


def main() -> int:
    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception as error:  # ImportError, or a broken install failing on import
            print(f"{MARKER} missing {sys.executable} {name}: {type(error).__name__}: {error}")
            return 3
    print(f"{MARKER} ok {sys.executable}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
