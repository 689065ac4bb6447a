"""Pilot tests of `rrg tui`: a real library (JPEGs indexed by Scanner into a real SQLite file), keys
pressed, and what the screens show asserted. Sync tests that drive the app with `asyncio.run`."""

from __future__ import annotations

import asyncio
import os
from datetime import datetime

from PIL import Image
from textual.widgets import DataTable, Input, Static
from textual.worker import WorkerCancelled, WorkerState

from rrg_local.concepts.store import ConceptStore
from tests.conftest import write_jpeg
from tui.app import WATCH_GROUP, RRGApp
from tui.halfblock import UPPER_HALF, halfblock
from tui.screens.ask import Answer
from tui.views import MODEL_HOWTO

SIZE = (130, 40)
# Set RRG_TUI_SCREENSHOTS=docs to refresh the screenshots in docs/ (tui-library.svg, ...); unset: none saved.
SCREENSHOTS = os.environ.get("RRG_TUI_SCREENSHOTS")


def drive(app: RRGApp, scenario) -> None:
    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await scenario(pilot)

    asyncio.run(main())


RUNNING = (WorkerState.PENDING, WorkerState.RUNNING)  # a cancelled thread may still run; its result is dropped


async def settle(pilot, quiet_rounds: int = 3) -> None:
    """Let thread workers finish and their messages be handled (the watcher never finishes: not waited for):
    until `quiet_rounds` rounds in a row found no worker running. A message handled late can start another
    worker (a scan's end starts a load), so a fixed number of rounds could return before it ran (seen once
    under a busy CI: the status still said "scanning")."""
    quiet = 0
    for _ in range(200):
        busy = [w for w in pilot.app.workers if w.group != WATCH_GROUP and w.state in RUNNING]
        for worker in busy:
            try:
                await worker.wait()
            except WorkerCancelled:  # an exclusive worker replaced by a newer one
                pass
        await pilot.pause()
        quiet = 0 if busy else quiet + 1
        if quiet >= quiet_rounds:
            return


def screenshot(app: RRGApp, name: str) -> None:
    if SCREENSHOTS:
        app.save_screenshot(name, SCREENSHOTS)


def shown(app: RRGApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).content)


def table_rows(app: RRGApp, selector: str) -> list[list[str]]:
    table = app.screen.query_one(selector, DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def test_library_lists_filters_and_opens_a_photo(library, db):
    settings, pid = library

    async def scenario(pilot):
        app = pilot.app
        rows = table_rows(app, "#photos")
        assert [r[2] for r in rows] == ["2023-01-05", "2024-06-03", "2024-06-04"]
        assert rows[1][3:5] == ["320x240", "Canon EOS R6"] and rows[1][5].endswith("beach/bo1.jpg")
        assert "3 of 3 photos" in shown(app, "#library-status")
        screenshot(app, "tui-library.svg")

        await pilot.press("slash", *"2024-06")
        assert len(table_rows(app, "#photos")) == 2
        app.screen.query_one("#filter", Input).value = "home"
        await pilot.pause()
        assert [r[5].rsplit("/", 1)[1] for r in table_rows(app, "#photos")] == ["mug.jpg"]
        app.screen.query_one("#filter", Input).value = "bo1"
        await pilot.pause()
        await pilot.press("enter", "enter")  # leave the filter, open the photo
        await settle(pilot)
        meta = shown(app, "#meta")
        assert f"photo {pid}" in meta and "2024-06-03 10:00:00" in meta and "320 x 240" in meta
        assert "Canon EOS R6" in meta and "bo1.jpg" in meta
        assert table_rows(app, "#tags") == [["Bo", "suggested", "0.87", "white patch over the eye"]]
        assert UPPER_HALF in str(app.screen.query_one("#thumb", Static).content)
        screenshot(app, "tui-photo.svg")

        await pilot.press("y")
        await settle(pilot)
        assert table_rows(app, "#tags")[0][1] == "confirmed"
        await pilot.press("escape")
        assert app.screen.query_one("#photos", DataTable)

    drive(RRGApp(settings), scenario)
    status = db.execute("SELECT status FROM tags WHERE photo_id = ?", [pid]).fetchone()[0]
    bo = ConceptStore(db).get("Bo")
    assert status == "confirmed"
    assert ConceptStore(db).photos(bo, "confirmed") == {pid}


def test_reject_makes_a_hard_negative(library, db):
    settings, pid = library

    async def scenario(pilot):
        await pilot.press("down", "enter")  # rows sorted by date: the second is bo1
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        assert table_rows(pilot.app, "#tags")[0][1] == "rejected"

    drive(RRGApp(settings), scenario)
    assert ConceptStore(db).photos(ConceptStore(db).get("Bo"), "negative") == {pid}


def test_concepts_screen_without_a_model(library):
    settings, pid = library

    async def scenario(pilot):
        await pilot.press("2")
        await settle(pilot)
        assert table_rows(pilot.app, "#concepts")[0][:2] == ["Bo", "dog"]
        assert "rrg model add" in shown(pilot.app, "#model-notice")
        assert "rrg model pull" in shown(pilot.app, "#model-notice")
        assert shown(pilot.app, "#model-notice") == MODEL_HOWTO
        assert "<Bo>  (dog)" in shown(pilot.app, "#concept-details")
        assert "stage-2 threshold: 0.50 (the default" in shown(pilot.app, "#concept-details")
        screenshot(pilot.app, "tui-concepts.svg")

    drive(RRGApp(settings), scenario)


def test_ask_a_library_question_without_a_model(library):
    settings, pid = library

    async def scenario(pilot):
        await pilot.press("3")
        await pilot.pause()
        await pilot.press(*"Show me photos of <Bo>", "enter")
        await settle(pilot)
        answer = str(pilot.app.screen.query_one(Answer).content)
        assert "1 photo of <Bo>" in answer and "bo1.jpg" in answer
        assert f"photos: {pid}" in answer
        assert "unconfirmed" in answer
        await pilot.press(*"Photos from June 2024", "enter")  # no concept: the whole library, by capture date
        await settle(pilot)
        by_date = str(pilot.app.screen.query(Answer).last().content)
        assert "\n2 photos from June 2024:\n" in by_date and "bo2.jpg" in by_date and "mug.jpg" not in by_date

    drive(RRGApp(settings), scenario)


def test_activity_shows_counts_and_the_corrupt_file(library):
    settings, _ = library

    async def scenario(pilot):
        await pilot.press("4")
        await settle(pilot)
        assert "photos: 3" in shown(pilot.app, "#counts") and "bad files: 1" in shown(pilot.app, "#counts")
        (error,) = table_rows(pilot.app, "#errors")
        assert error[0].endswith("broken.jpg")

    drive(RRGApp(settings), scenario)


def test_rescan_indexes_a_new_photo(library, tmp_path):
    settings, _ = library
    write_jpeg(settings.folders[0] / "new" / "later.jpg", 9, taken=datetime(2025, 2, 1, 8))

    async def scenario(pilot):
        await pilot.press("r")
        await settle(pilot)
        assert len(table_rows(pilot.app, "#photos")) == 4
        assert "4 of 4 photos" in shown(pilot.app, "#library-status")

    drive(RRGApp(settings), scenario)


def test_bad_config_shows_a_notice_and_the_app_starts(library, rrg_home):
    (rrg_home / "config.toml").write_text("folders = [unclosed\n", encoding="utf-8")
    from rrg_local.config import load_settings

    settings = load_settings()
    assert settings.notices

    async def scenario(pilot):
        notes = [n.message for n in pilot.app.notes]
        assert any("config" in n and "using defaults" in n for n in notes)
        assert len(table_rows(pilot.app, "#photos")) == 3  # same home, so the same library
        await pilot.press("4")  # the toast goes; the Activity screen still lists it, newest first
        await settle(pilot)
        rows = table_rows(pilot.app, "#notes")
        assert (
            rows and rows[0][1] == "warning" and rows[0][2].startswith("settings: ") and "using defaults" in rows[0][2]
        )
        pilot.app.notify("later news")
        await pilot.press("r", "1", "4")
        await settle(pilot)
        assert table_rows(pilot.app, "#notes")[0][1:] == ["information", "later news"]

    drive(RRGApp(settings), scenario)


def test_help_and_quit(library):
    settings, _ = library

    async def scenario(pilot):
        await pilot.press("question_mark")
        await pilot.pause()
        assert pilot.app.screen.query_one("#help")
        await pilot.press("escape", "q")
        await pilot.pause()
        assert pilot.app._exit

    drive(RRGApp(settings), scenario)


def test_halfblock_maps_two_pixel_rows_to_one_text_row():
    img = Image.new("RGB", (2, 2))
    img.putpixel((0, 0), (255, 0, 0))
    img.putpixel((1, 0), (0, 255, 0))
    img.putpixel((0, 1), (0, 0, 255))
    img.putpixel((1, 1), (255, 255, 255))
    text = halfblock(img)
    assert text.plain == UPPER_HALF * 2
    styles = [(str(s.style.color.triplet.hex), str(s.style.bgcolor.triplet.hex)) for s in text.spans]
    assert styles == [("#ff0000", "#0000ff"), ("#00ff00", "#ffffff")]


def test_halfblock_scales_to_width_and_keeps_odd_rows():
    assert halfblock(Image.new("RGB", (320, 240)), 40).plain.count("\n") == 14  # 30 pixel rows: 15 lines
    odd = halfblock(Image.new("RGB", (1, 3), (9, 9, 9)))
    assert odd.plain == UPPER_HALF + "\n" + UPPER_HALF
    assert odd.spans[-1].style.bgcolor is None


def test_streamed_pieces_show_as_they_arrive(library):
    from tui.messages import AnswerFinished, AnswerStreamed

    settings, _ = library

    async def scenario(pilot):
        await pilot.press("3")
        await pilot.pause()
        screen = pilot.app.screen
        await screen.query_one("#answers").mount(Answer(999, "What is Bo doing?"))
        for piece in ("Bo is ", "chasing a ", "ball."):
            screen.post_message(AnswerStreamed(999, piece))
        await pilot.pause()
        assert str(screen.query_one("#answer-999", Answer).content).endswith("Bo is chasing a ball.")
        screen.post_message(AnswerFinished(999, "Bo is chasing a ball.", [(7, "/p/x.jpg")]))
        await pilot.pause()
        assert str(screen.query_one("#answer-999", Answer).content).endswith("ball.\nphotos: 7")

    drive(RRGApp(settings), scenario)


def test_command_palette_switches_screens_and_ctrl_c_quits(library):
    settings, _ = library

    async def scenario(pilot):
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Show activity")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await settle(pilot)
        assert pilot.app.current_mode == "activity"
        assert "bad files: 1" in shown(pilot.app, "#counts")
        await pilot.press("ctrl+c")
        await pilot.pause()
        assert pilot.app._exit

    drive(RRGApp(settings), scenario)


def test_a_watcher_report_reaches_the_app_once(library):
    """The screens' copies of `LibraryChanged` must not bubble back to the app (it hands them out again)."""
    from tui.messages import LibraryChanged

    settings, _ = library

    async def scenario(pilot):
        await settle(pilot)
        before = pilot.app.library_changes
        pilot.app.post_message(LibraryChanged("scan", {"new_photos": 0, "missing": 1}, []))
        await settle(pilot)
        await pilot.pause(0.3)
        assert pilot.app.library_changes == before + 1
        assert len(table_rows(pilot.app, "#photos")) == 3

    drive(RRGApp(settings, watch=False), scenario)


def test_a_question_about_a_photo_is_answered_on_its_screen(library, tiny):
    """`a` on a photo asks the registered model (the real tiny one) about it: "Who is in this photo?" names the
    concept auto-tagging suggested there."""
    from rrg_local.vlm import registry

    settings, pid = library
    pair = tiny.pair("f16")
    registry.add(settings, "tiny", pair.text, pair.mmproj, use=True)

    async def scenario(pilot):
        app = pilot.app
        app.screen.query_one("#filter", Input).value = "bo1"
        await pilot.pause()
        await pilot.press("enter", "enter")  # leave the filter, open the photo
        await settle(pilot)
        await pilot.press("a", *"Who is in this photo?", "enter")
        await settle(pilot)
        answer = shown(app, "#photo-answer")
        assert answer.startswith("> Who is in this photo?\n<Bo>: probably: auto-tagging suggested <Bo> here")
        assert "(score 0.87, not confirmed: rrg review). white patch over the eye" in answer

    drive(RRGApp(settings), scenario)
