"""rrg-local: an offline personal photo assistant.

Subpackages: `library` (scan and watch photo folders), `db` (the SQLite store), `jobs` (resumable
per-photo work), `cli` (the `rrg` command). This package never imports torch, peft or textual.
"""

__version__ = "0.1.0"
