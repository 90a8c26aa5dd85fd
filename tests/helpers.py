"""Small helpers shared by the test modules (not Hypothesis strategies: see strategies.py)."""

from __future__ import annotations

import os
from pathlib import Path


def offline_env(tmp_path: Path) -> dict[str, str]:
    """No network and no data in the default places, as a reader without them would be."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    unreachable = "http://127.0.0.1:9"  # the discard port: every connection fails at once
    env.update(
        HOME=str(tmp_path / "home"),
        DENSITYKIT_DATA=str(tmp_path / "data"),
        http_proxy=unreachable,
        https_proxy=unreachable,
        HTTP_PROXY=unreachable,
        HTTPS_PROXY=unreachable,
        no_proxy="",
        MPLBACKEND="Agg",
        OMP_NUM_THREADS="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env
