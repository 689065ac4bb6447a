"""Pilot tests of the grid, the watcher, teaching, tagging, the Photo question and Settings, on a real
library (tests/tui/conftest.py); the tagging test runs the real tiny llama.cpp model."""

from __future__ import annotations

import time
from datetime import datetime

from textual.widgets import Input, ProgressBar, Static, TextArea

from rrg_local.concepts.store import ConceptStore
from rrg_local.config import load_settings
from rrg_local.jobs import KIND_TAG, Jobs
from tests.conftest import write_jpeg
from tests.tui.test_app import drive, screenshot, settle, shown, table_rows
from tui.app import RRGApp
from tui.grid import Cell, ThumbGrid
from tui.halfblock import UPPER_HALF
from tui.views import MODEL_HOWTO


def cell_ids(app) -> list[int]:
    return [c.row["id"] for c in app.screen.query(Cell)]


async def wait_for(pilot, condition, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.2)


def test_grid_shows_thumbnails_and_keeps_the_filters(library):
    settings, pid = library

    async def scenario(pilot):
        app = pilot.app
        await pilot.press("g")
        await settle(pilot)
        assert app.screen.query_one(ThumbGrid).display and not app.screen.query_one("#photos").display
        assert len(cell_ids(app)) == 3
        pictures = [str(c.query_one(".picture", Static).content) for c in app.screen.query(Cell)]
        assert all(UPPER_HALF in p for p in pictures)  # headless: the half-block fallback
        screenshot(app, "tui-grid.svg")
        await pilot.press("right", "enter")  # the second cell (by date) is bo1
        await settle(pilot)
        assert f"photo {pid}" in shown(app, "#meta")
        await pilot.press("escape")
        await pilot.pause()
        for text, expected in [("2024-06", 2), ("2023..2024-06-03", 2), ("<Bo>", 1), ("is:untagged", 2), ("", 3)]:
            app.screen.query_one("#filter", Input).value = text
            await settle(pilot)
            assert len(cell_ids(app)) == expected, text
        app.screen.query_one("#filter", Input).value = "<bo> is:suggested"
        await settle(pilot)
        assert cell_ids(app) == [pid]
        await pilot.press("g")  # back to the list: same filter
        await settle(pilot)
        assert [int(r[1]) for r in table_rows(app, "#photos")] == [pid]

    drive(RRGApp(settings), scenario)


def test_grid_pages_through_a_library_larger_than_a_page(library, monkeypatch):
    import tui.grid

    settings, _ = library
    for i in range(4):  # 7 photos with the fixture's 3; pages of 3 cells
        write_jpeg(settings.folders[0] / "more" / f"m{i}.jpg", 20 + i, taken=datetime(2025, 1, 1 + i, 9))
    monkeypatch.setattr(tui.grid, "PAGE", 3)

    def status(app) -> str:
        return shown(app, "#library-status")

    async def scenario(pilot):
        app = pilot.app
        await pilot.press("r")  # index the new photos
        await wait_for(pilot, lambda: len(table_rows(app, "#photos")) == 7)
        order = [int(r[1]) for r in table_rows(app, "#photos")]  # by date, as the grid shows them
        await pilot.press("g")
        await settle(pilot)
        grid = app.screen.query_one(ThumbGrid)
        assert cell_ids(app) == order[:3] and "grid page 1 of 3" in status(app)
        await pilot.press("right", "right", "right")  # walks off the first page onto the second
        await settle(pilot)
        assert cell_ids(app) == order[3:6] and grid.current_id() == order[3] and "grid page 2 of 3" in status(app)
        cursor = [c.row["id"] for c in app.screen.query(Cell) if c.has_class("-cursor")]
        assert cursor == [order[3]]
        await pilot.press("pagedown")  # the last page holds one photo: the cursor stops on it
        await settle(pilot)
        assert cell_ids(app) == order[6:] and grid.current_id() == order[6] and "grid page 3 of 3" in status(app)
        pictures = [str(c.query_one(".picture", Static).content) for c in app.screen.query(Cell)]
        assert all(UPPER_HALF in p for p in pictures)  # each page's thumbnails are drawn when it is shown
        await pilot.press("space", "pageup", "pageup")
        await settle(pilot)
        assert cell_ids(app) == order[:3] and grid.current_id() == order[0] and "1 marked" in status(app)
        app.screen.query_one("#filter", Input).value = "2025"  # the 4 new photos: 2 pages
        await settle(pilot)
        assert cell_ids(app) == order[3:6] and "4 of 7 photos" in status(app) and "page 1 of 2" in status(app)
        await pilot.press("pagedown", "enter")
        await settle(pilot)
        assert f"photo {order[6]}" in shown(app, "#meta")

    drive(RRGApp(settings), scenario)


def test_watcher_shows_new_photos_and_bad_files_without_a_restart(library):
    settings, _ = library
    root = settings.folders[0]

    async def scenario(pilot):
        app = pilot.app
        await wait_for(pilot, app.watch_ready.is_set)
        write_jpeg(root / "later" / "arrived.jpg", 11, taken=datetime(2025, 3, 1, 9))
        (root / "later" / "bad.jpg").write_bytes(b"")
        await wait_for(pilot, lambda: len(table_rows(app, "#photos")) == 4)
        assert table_rows(app, "#photos")[-1][5].endswith("later/arrived.jpg")
        await pilot.press("4")
        await settle(pilot)
        await wait_for(
            pilot, lambda: any(r[0].endswith("bad.jpg") and "later" in r[0] for r in table_rows(app, "#errors"))
        )
        (bad,) = [r for r in table_rows(app, "#errors") if r[0].endswith("later/bad.jpg")]
        assert bad[1] == "empty" and bad[2]
        assert "photos: 4" in shown(app, "#counts")

    drive(RRGApp(settings), scenario)


def test_teach_a_concept_from_marked_photos_without_a_model(library, db):
    settings, _ = library

    async def scenario(pilot):
        app = pilot.app
        await pilot.press("down", "space", "down", "space")  # mark bo1 and bo2
        assert [r[0] for r in table_rows(app, "#photos")] == ["", "\u25cf", "\u25cf"]
        assert "2 marked" in shown(app, "#library-status")
        await pilot.press("n")
        await pilot.pause()
        await pilot.press(*"Rex", "enter", *"dog", "enter")
        await settle(pilot)
        assert "<Rex> created from 2 photos" in shown(app, "#library-status")
        notes = "\n".join(n.message for n in app.notes)
        assert "rrg model add" in notes and "rrg model pull" in notes
        assert [r[0] for r in table_rows(app, "#photos")] == ["", "", ""]  # marks cleared

    drive(RRGApp(settings), scenario)
    store = ConceptStore(db)
    rex = store.get("Rex")
    refs = {
        db.execute("SELECT photo_id FROM paths WHERE path LIKE ?", [f"%{n}"]).fetchone()[0]
        for n in ("bo1.jpg", "bo2.jpg")
    }
    assert rex.category == "dog" and store.photos(rex, "reference") == refs
    assert Jobs(db).counts()[KIND_TAG]["pending"] == 3  # the library is queued for tagging


def test_teach_cancel_and_duplicate_name(library, db):
    settings, _ = library

    async def scenario(pilot):
        await pilot.press("n")
        await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("n")
        await pilot.pause()
        await pilot.press(*"bo", "enter", *"dog", "enter")
        await settle(pilot)
        assert any("not created" in n.message and "exists" in n.message for n in pilot.app.notes)

    drive(RRGApp(settings), scenario)
    assert [c.name for c in ConceptStore(db).all()] == ["Bo"]


def test_activity_without_a_model_says_how_to_add_one_and_tag_now_fails_cleanly(library):
    settings, _ = library

    async def scenario(pilot):
        await pilot.press("4")
        await settle(pilot)
        assert shown(pilot.app, "#model") == MODEL_HOWTO
        await pilot.press("t")
        await settle(pilot)
        assert "rrg model add" in shown(pilot.app, "#tag-status")
        assert pilot.app.screen.tagging is False

    drive(RRGApp(settings), scenario)


def test_photo_question_without_a_model(library):
    settings, pid = library

    async def scenario(pilot):
        await pilot.press("down", "enter")
        await settle(pilot)
        await pilot.press("a", *"What is <Bo> doing?", "enter")
        await settle(pilot)
        answer = shown(pilot.app, "#photo-answer")
        assert answer.startswith("> What is <Bo> doing?") and "rrg model add" in answer
        await pilot.press("escape", "escape")  # leave the input, then the photo
        await pilot.pause()
        assert pilot.app.screen.query_one("#photos")

    drive(RRGApp(settings), scenario)


def test_settings_are_saved_and_load_back(library, tmp_path):
    settings, _ = library
    other = tmp_path / "more-photos"
    other.mkdir()

    async def scenario(pilot):
        await pilot.press("5")
        await settle(pilot)
        screen = pilot.app.screen
        assert "rrg model add" in shown(pilot.app, "#model-howto")
        screen.query_one("#folders", TextArea).text = f"{settings.folders[0]}\n{other}\n"
        screen.query_one("#debounce_s", Input).value = "2.5"
        screen.query_one("#rescan_interval_s", Input).value = "0"
        screenshot(pilot.app, "tui-settings.svg")
        screen.query_one("#scan_workers", Input).value = "-3"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "not saved: scan_workers" in shown(pilot.app, "#settings-status")
        screen.query_one("#scan_workers", Input).value = "1"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "saved to" in shown(pilot.app, "#settings-status")
        assert pilot.app.settings.folders == (settings.folders[0], other)

    drive(RRGApp(settings), scenario)
    loaded = load_settings()
    assert loaded.notices == ()
    assert loaded.folders == (settings.folders[0], other)
    assert (loaded.debounce_s, loaded.rescan_interval_s, loaded.scan_workers) == (2.5, 0.0, 1)


def test_teach_describe_and_tag_with_the_tiny_model(library, db, tiny):
    from rrg_local.vlm import registry

    settings, pid = library
    pair = tiny.pair("f16")
    registry.add(settings, "tiny", pair.text, pair.mmproj)

    async def scenario(pilot):
        app = pilot.app
        await pilot.press("space")  # mark the 2023 photo (mug)
        await pilot.press("n")
        await pilot.pause()
        await pilot.press(*"Mug", "enter", *"mug", "enter")
        await settle(pilot)
        await wait_for(pilot, lambda: "described" in shown(app, "#library-status"), 120)
        await pilot.press("4")
        await settle(pilot)
        assert shown(app, "#model").startswith("model: tiny") and str(pair.text) in shown(app, "#model")
        await pilot.press("t")
        await settle(pilot)
        await wait_for(pilot, lambda: not app.screen.tagging, 300)
        bar = app.screen.query_one(ProgressBar)
        assert bar.total == 3 and bar.progress == 3
        assert shown(app, "#tag-status").startswith("tagged 3 photos")
        await pilot.press("2")
        await settle(pilot)
        store = ConceptStore(db)
        by_name = {r[0]: r for r in table_rows(app, "#concepts")}
        for c in store.all():
            assert by_name[c.name][2] == str(len(store.tags(c, statuses=("suggested",))))
        await pilot.press("down")  # Mug (Bo, without photos, keeps the default)
        await settle(pilot)
        assert "(its own: 1 of its photos vs 0 known not to show it)" in shown(app, "#concept-details")
        await pilot.press("1")
        await settle(pilot)
        await pilot.press("down", "enter")
        await settle(pilot)
        expected = [t.concept for t in store.tags(photo_id=pid, statuses=("suggested", "confirmed", "rejected"))]
        assert [r[0] for r in table_rows(app, "#tags")] == (expected or ["-"])

    drive(RRGApp(settings), scenario)
    mug = ConceptStore(db).get("Mug")
    assert mug.description_source == "speaker" and (mug.detailed or mug.coarse)
    assert Jobs(db).counts()[KIND_TAG].get("pending", 0) == 0


def test_photos_arriving_in_a_watched_folder_are_tagged(library, db, tiny):
    from rrg_local.vlm import registry

    settings, pid = library
    pair = tiny.pair("f16")
    registry.add(settings, "tiny", pair.text, pair.mmproj)
    store = ConceptStore(db)
    store.add_photos(store.get("Bo"), [pid], "reference")
    Jobs(db).finish([r[0] for r in db.execute("SELECT id FROM jobs WHERE kind = 'tag'")])  # the old pass is done
    db.conn.commit()
    root = settings.folders[0]

    async def scenario(pilot):
        app = pilot.app
        await wait_for(pilot, app.watch_ready.is_set)
        write_jpeg(root / "later" / "arrived.jpg", 12, taken=datetime(2025, 3, 2, 9))
        await wait_for(pilot, lambda: len(table_rows(app, "#photos")) == 4)
        await wait_for(pilot, lambda: not app.auto_tagging, 120)

    drive(RRGApp(settings), scenario)
    new = db.execute("SELECT photo_id FROM paths WHERE path LIKE '%arrived.jpg'").fetchone()[0]
    states = dict(db.execute("SELECT photo_id, state FROM jobs WHERE kind = 'tag'").fetchall())
    assert states[new] == "done"  # stage 1 (and stage 2 if it retrieved Bo) ran on the new photo
    assert db.execute("SELECT count(*) FROM embeddings WHERE photo_id = ?", [new]).fetchone()[0] == 1
