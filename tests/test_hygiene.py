"""Import hygiene: the runtime never pulls in torch, peft or textual; `rrg --help` stays cheap."""

import importlib.util
import pkgutil
import subprocess
import sys

import pytest

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


def test_trainer_stack_reaches_no_network(tmp_path):
    """Loading the trainer's stack looks up no host: bitsandbytes (through transformers' `kernels`) asks the
    Hugging Face hub for a CPU kernel at import, which the trainer turns off (`HF_HUB_OFFLINE`)."""
    if importlib.util.find_spec("bitsandbytes") is None:  # not imported here: this process would look it up too
        pytest.skip("bitsandbytes is not installed")
    from tests.netguard import attempts, guarded_env

    net = tmp_path / "network.log"
    code = "import trainer.train, trainer.export, trainer.demo_model, transformers, peft, bitsandbytes"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=guarded_env(net))
    assert out.returncode == 0, out.stderr[-2000:]
    assert attempts(net) == []


def test_network_tripwire_sees_a_lookup(tmp_path):
    """The tripwire the privacy tests rely on catches (and refuses) a real lookup in the subprocess."""
    from tests.netguard import attempts, guarded_env

    net = tmp_path / "network.log"
    code = "import socket\ntry:\n    socket.getaddrinfo('example.org', 443)\nexcept OSError as e:\n    print(e)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=guarded_env(net))
    assert "network access refused" in out.stdout
    assert [line.split()[1:] for line in attempts(net)] == [["socket.getaddrinfo", "'example.org'"]]
