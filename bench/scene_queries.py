"""How well "Show me Bo at the beach" answers on the demo library: every concept x every scene, against truth.json.

Run: `.venv/bin/python bench/scene_queries.py [--home DIR]` (default: a fresh `rrg demo` home in a temporary
folder, about a minute). For each of the demo's concepts and each of the world's six scenes it asks the library
question with no cap on the photos checked, and compares the photos cited with the concept's tagged photos that
truth.json puts in that scene. Printed per scene: right, wrong and missed photos, precision and recall, and how
the photos found were found: the listener said yes to "Was this photo taken on the beach?" (`asked`), or its
open answer to "Where was this photo taken?" named the scene (`named`). The last row's baseline is the yes/no
question alone (what `rrg ask` did before the open answer was read): the photos found by `asked`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SCENES = ("beach", "grass", "kitchen", "snow", "living room", "street")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, help="an `rrg demo` home (<data dir>/demo); default: a fresh one")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = args.home
        if home is None:
            from rrg_local.config import load_settings
            from rrg_local.demo.run import run_demo

            os.environ["RRG_HOME"] = tmp
            run_demo(load_settings(), fresh=True, echo=lambda _: None)
            home = Path(tmp) / "demo"
        measure(home)
    return 0


def measure(home: Path) -> None:
    from rrg_local.concepts.ask import Asker, route
    from rrg_local.concepts.embeddings import EmbeddingStore, make_embedder
    from rrg_local.concepts.store import ConceptStore
    from rrg_local.config import load_settings
    from rrg_local.db import open_db
    from rrg_local.vlm.registry import open_model

    os.environ["RRG_HOME"] = str(home)
    settings = load_settings()
    db = open_db(settings.db_path)
    model = open_model(settings)
    store = ConceptStore(db)
    emb = EmbeddingStore(db, make_embedder(settings, model), settings.thumbs_dir)
    files = json.loads((home / "library" / "truth.json").read_text())["files"]
    truth = {str(home / "library" / f): info for f, info in files.items()}
    asker = Asker(store, model, emb)
    counts: dict[str, Counter] = {s: Counter() for s in SCENES}
    for concept in store.all():
        first = min(store.photos(concept, "reference"))
        (path,) = db.execute("SELECT path FROM paths WHERE photo_id = ? LIMIT 1", [first]).fetchone()
        key = truth[path]["concepts"][0]
        tagged = {t.photo_id: t.path for t in store.tags(concept)}
        for scene in SCENES:
            prep = "on" if scene in ("beach", "grass", "street") else "in"
            r = route(f"Show me {concept.name} {prep} the {scene}", [concept.name], has_photo=False)
            c = counts[scene]
            for pid, p in tagged.items():
                how, calls = asker.scene_check(emb.image(pid), r, [concept])
                there = truth[p]["scene"] == scene and key in truth[p]["concepts"]
                c["calls"] += calls
                c[("right" if there else "wrong") if how else ("missed" if there else "rejected")] += 1
                if how == "asked":
                    c["asked_right" if there else "asked_wrong"] += 1
                c[how or "none"] += 1
    print(f"{len(store.all())} concepts x {len(SCENES)} scenes, each concept's tagged photos checked for each scene")
    print("| scene | right | wrong | missed | precision | recall | found by asked / named | VLM calls |")
    print("|---|---|---|---|---|---|---|---|")
    total = Counter()
    for scene, c in counts.items():
        total.update(c)
        print(_row(scene, c))
    print(_row("all", total))
    base = Counter(right=total["asked_right"], wrong=total["asked_wrong"],
                   missed=total["right"] + total["missed"] - total["asked_right"])  # fmt: skip
    print(_row("all, the yes/no question alone (baseline)", base))
    model.close()


def _row(name: str, c: Counter) -> str:
    right, wrong, missed = c["right"], c["wrong"], c["missed"]
    precision = f"{right / (right + wrong):.2f}" if right + wrong else "-"
    recall = f"{right / (right + missed):.2f}" if right + missed else "-"
    how = f"{c['asked']} / {c['named']}" if "calls" in c else "-"
    calls = c.get("calls", "-")
    return f"| {name} | {right} | {wrong} | {missed} | {precision} | {recall} | {how} | {calls} |"


if __name__ == "__main__":
    raise SystemExit(main())
