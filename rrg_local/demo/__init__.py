"""The demo world: a generated photo library (and, later, the demo model) for `rrg demo` and tests."""
