"""The public surface: an explicit, sorted __all__, and no heavy imports at import time."""

from __future__ import annotations

import subprocess
import sys
import types

import govkit


def test_all_is_sorted_and_complete() -> None:
    public = {name for name, value in vars(govkit).items()
              if not name.startswith("_") and name != "annotations" and not isinstance(value, types.ModuleType)}
    assert govkit.__all__ == sorted(govkit.__all__)
    assert set(govkit.__all__) - {"__version__"} == public


def test_import_loads_no_heavy_library() -> None:
    code = ("import sys, govkit, govkit.cli; heavy = {'mlflow', 'shap', 'sklearn', 'fairlearn', 'pyarrow', "
            "'pandas', 'numpy', 'llama_cpp', 'xllamacpp', 'torch', 'cryptography', 'httpx', 'aiohttp', 'gguf', 'openai'}; "
            "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
