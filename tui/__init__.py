"""The Textual app over rrg_local (`rrg tui`). Uses rrg_local only; never imports torch."""
