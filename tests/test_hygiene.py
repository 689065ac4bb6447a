"""Import hygiene: the runtime never pulls in torch, peft or textual; `rrg --help` stays cheap."""

import pkgutil
import subprocess
import sys

import rrg_local


def test_rrg_local_never_imports_heavy_packages():
    modules = [m.name for m in pkgutil.walk_packages(rrg_local.__path__, "rrg_local.")]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'peft', 'textual', 'transformers'})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert len(modules) > 5
    assert out.stdout.strip() == ""


def test_cli_import_is_light():
    code = "import sys, rrg_local.cli; print(','.join(m for m in ('PIL', 'numpy', 'watchdog') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_tui_never_imports_torch():
    import tui

    modules = ["tui.app"] + [m.name for m in pkgutil.walk_packages(tui.__path__, "tui.")]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'peft', 'transformers'})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "tui.screens.library" in modules
    assert out.stdout.strip() == ""
