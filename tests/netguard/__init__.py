"""The network tripwire (`sitecustomize.py` here) for tests that run the product in a subprocess."""

from __future__ import annotations

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Switches that would hide what the code under test does on its own (tests/conftest.py sets them for pytest).
OFFLINE_SWITCHES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


def guarded_env(log: Path) -> dict[str, str]:
    """This process's environment with the tripwire on (every non-local lookup or connection is logged to `log`
    and refused) and without the hub's offline switches."""
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_SWITCHES}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), *filter(None, [env.get("PYTHONPATH")])])
    env["RRG_NET_LOG"] = str(log)
    return env


def attempts(log: Path) -> list[str]:
    """The lookups and connections the tripwire refused (none when the file was never written)."""
    return log.read_text().splitlines() if log.exists() else []
