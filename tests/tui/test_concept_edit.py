"""Pilot tests of editing (`e`) and deleting (`d`) concepts on the Concepts screen, against a real
library (the `library` fixture: concept Bo, a dog, with a suggested tag on one photo)."""

from __future__ import annotations

from textual.widgets import Input, Label

from rrg_local.concepts.store import ConceptStore
from tests.tui.test_app import drive, settle, shown, table_rows
from tui.app import RRGApp
from tui.screens.concept_edit import ConceptDeleteScreen, ConceptEditScreen
from tui.screens.concepts import ConceptsScreen
from tui.screens.help import HELP


async def settle_until(pilot, condition, seconds: float = 30.0) -> None:
    """`settle`, then keep pausing until `condition()` holds or `seconds` pass: a save or delete is a worker,
    then a message, then a reload worker, which three settle rounds did not always cover on a busy machine."""
    import time

    def holds() -> bool:
        try:
            return bool(condition())
        except Exception:  # the modal may still be on top: the table is not there yet
            return False

    await settle(pilot)
    deadline = time.monotonic() + seconds
    while not holds() and time.monotonic() < deadline:
        await pilot.pause(0.1)
        await settle(pilot)


def counts(db) -> tuple[int, int, int]:
    return tuple(db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("concepts", "tags", "photos"))


async def open_edit(pilot) -> ConceptEditScreen:
    await pilot.press("2")
    await settle(pilot)
    await pilot.press("e")
    await settle(pilot)
    assert isinstance(pilot.app.screen, ConceptEditScreen)
    return pilot.app.screen


def test_edit_renames_and_describes(library, db):
    settings, pid = library
    version = ConceptStore(db).get("Bo").version

    async def scenario(pilot):
        modal = await open_edit(pilot)
        fields = {f: modal.query_one(f"#edit-{f}", Input).value for f in ("name", "category", "coarse", "detailed")}
        assert fields == {"name": "Bo", "category": "dog", "coarse": "", "detailed": ""}
        modal.query_one("#edit-name", Input).value = "Bobo"
        modal.query_one("#edit-coarse", Input).value = "a small white dog"
        modal.query_one("#edit-detailed", Input).value = "white terrier with a brown patch over the left eye"
        await pilot.pause()
        await pilot.press("enter")
        await settle_until(pilot, lambda: [r[0] for r in table_rows(pilot.app, "#concepts")] == ["Bobo"])
        assert isinstance(pilot.app.screen, ConceptsScreen)
        rows = table_rows(pilot.app, "#concepts")
        assert [r[:2] for r in rows] == [["Bobo", "dog"]]
        assert rows[0][3].startswith("white terrier with a brown patch")
        assert "<Bobo>  (dog)" in shown(pilot.app, "#concept-details")

    drive(RRGApp(settings, watch=False), scenario)
    store = ConceptStore(db)
    assert store.find("Bo") is None
    bo = store.get("Bobo")
    assert (bo.category, bo.coarse) == ("dog", "a small white dog")
    assert bo.detailed == "white terrier with a brown patch over the left eye"
    assert bo.description_source == "user" and bo.version > version
    assert [t.photo_id for t in store.tags(bo)] == [pid]  # the rename keeps its tags


def test_edit_with_the_save_button_changes_the_category(library, db):
    settings, pid = library

    async def scenario(pilot):
        modal = await open_edit(pilot)
        modal.query_one("#edit-category", Input).value = "terrier"
        await pilot.click("#save")
        await settle_until(pilot, lambda: table_rows(pilot.app, "#concepts")[0][1] == "terrier")
        assert table_rows(pilot.app, "#concepts")[0][:2] == ["Bo", "terrier"]

    drive(RRGApp(settings, watch=False), scenario)
    bo = ConceptStore(db).get("Bo")
    assert (bo.name, bo.category, bo.coarse, bo.detailed) == ("Bo", "terrier", "", "")


def test_duplicate_name_is_refused(library, db):
    settings, pid = library
    ConceptStore(db).add("Mug", "mug")
    db.conn.commit()
    before = ConceptStore(db).all()

    async def scenario(pilot):
        modal = await open_edit(pilot)  # Bo is first (sorted by name)
        assert modal.query_one("#edit-name", Input).value == "Bo"
        modal.query_one("#edit-name", Input).value = "mug"
        modal.query_one("#edit-detailed", Input).value = "should not be saved"
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(pilot.app.screen, ConceptsScreen)
        notes = [n.message for n in pilot.app.notes]
        assert any("not saved" in n and "already exists" in n for n in notes), notes
        assert [r[:2] for r in table_rows(pilot.app, "#concepts")] == [["Bo", "dog"], ["Mug", "mug"]]

    drive(RRGApp(settings, watch=False), scenario)
    assert ConceptStore(db).all() == before


def test_empty_name_stays_in_the_modal(library, db):
    settings, pid = library

    async def scenario(pilot):
        modal = await open_edit(pilot)
        modal.query_one("#edit-name", Input).value = "  "
        await pilot.press("enter")
        await pilot.pause()
        assert pilot.app.screen is modal
        assert "name and a category" in str(modal.query_one("#edit-error", Label).content)
        await pilot.press("escape")
        await settle(pilot)

    drive(RRGApp(settings, watch=False), scenario)
    assert ConceptStore(db).get("Bo").name == "Bo"


def test_delete_removes_the_concept_and_its_tags_not_the_photos(library, db):
    settings, pid = library
    _, _, photos = counts(db)
    assert db.execute("SELECT count(*) FROM tags WHERE photo_id = ?", [pid]).fetchone()[0] == 1

    async def scenario(pilot):
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(pilot.app.screen, ConceptDeleteScreen)
        question = str(pilot.app.screen.query_one("#delete-question", Label).content)
        assert question == "Delete <Bo>? Its tags go; photos stay."
        await pilot.click("#delete")
        await settle_until(pilot, lambda: table_rows(pilot.app, "#concepts") == [])
        assert isinstance(pilot.app.screen, ConceptsScreen)
        assert table_rows(pilot.app, "#concepts") == []
        assert "No concepts yet" in shown(pilot.app, "#concept-details")

    drive(RRGApp(settings, watch=False), scenario)
    assert ConceptStore(db).find("Bo") is None
    assert counts(db) == (0, 0, photos)
    assert db.execute("SELECT count(*) FROM photos WHERE id = ?", [pid]).fetchone()[0] == 1


def test_cancel_leaves_everything_unchanged(library, db):
    settings, pid = library
    before, rows_before = ConceptStore(db).all(), counts(db)

    async def scenario(pilot):
        modal = await open_edit(pilot)
        modal.query_one("#edit-name", Input).value = "Rex"
        modal.query_one("#edit-detailed", Input).value = "not saved"
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(pilot.app.screen, ConceptsScreen)
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(pilot.app.screen, ConceptDeleteScreen)
        await pilot.press("escape")
        await settle(pilot)
        await pilot.press("d")
        await pilot.pause()
        await pilot.click("#no")
        await settle(pilot)
        await pilot.press("d", "enter")  # enter alone is No
        await settle(pilot)
        assert isinstance(pilot.app.screen, ConceptsScreen)
        assert table_rows(pilot.app, "#concepts")[0][:2] == ["Bo", "dog"]

    drive(RRGApp(settings, watch=False), scenario)
    assert ConceptStore(db).all() == before
    assert counts(db) == rows_before


def test_footer_and_help_mention_the_keys():
    keys = {b.key: b.description for b in ConceptsScreen.BINDINGS}
    assert keys == {"e": "Edit concept", "d": "Delete concept"}
    assert "| `e` | Concepts: edit" in HELP and "| `d` | Concepts: delete" in HELP
