"""The TUI's screens, one small module each: library, photo, concepts, ask, activity, help."""
