"""Whether the terminal can show real images, and the `textual-image` widget class that does it.

Decided once, before the app starts (`textual-image` asks the terminal, which it cannot do once Textual
owns it). Only Sixel or the Kitty graphics protocol count; anything else (headless tests, pipes, plain
terminals, tmux, `RRG_TUI_GRAPHICS=0`, `textual-image` not installed) gets None and the grid draws half
blocks. tmux is left out on purpose: its graphics passthrough is unreliable, and asking through it left
Textual with the wrong terminal size (seen in tests/tui/test_terminal.py).
"""

from __future__ import annotations

import os
import sys


def graphics_image_class(environ: dict[str, str] | None = None) -> type | None:
    environ = os.environ if environ is None else environ
    if environ.get("RRG_TUI_GRAPHICS", "") == "0" or "PYTEST_CURRENT_TEST" in environ or "TMUX" in environ:
        return None
    if not (sys.__stdout__ and sys.__stdout__.isatty()):
        return None
    try:
        from textual_image.renderable import Image as Best
        from textual_image.renderable import SixelImage, TGPImage
        from textual_image.widget import Image
    except Exception:  # not installed, or the terminal query failed: half blocks it is
        return None
    return Image if Best in (SixelImage, TGPImage) else None
