"""Pure view logic of the TUI: filtering and formatting rows, and the concept details value.

No Textual, no database: functions of values, tested directly. Screens call these to turn query
results into table cells and text.
"""

from __future__ import annotations

from dataclasses import dataclass

from rrg_local.concepts.store import Tag, name_key, score_text
from rrg_local.library.query import PhotoRow

# What the library knows per photo for filtering: (concept name, tag status) pairs.
PhotoTags = tuple[tuple[str, str], ...]
FILTER_HELP = "/ filter: folder, date 2024-06, range 2023..2024-06, <Bo>, is:suggested|confirmed|rejected|untagged"

MODEL_HOWTO = (
    "No model is configured, so new concepts cannot be described and photos cannot be tagged yet.\n"
    "Add one you have:  rrg model add NAME --gguf MODEL.gguf --mmproj MMPROJ.gguf\n"
    "or download one:   rrg model pull REPO   (the only command that uses the network)"
)


@dataclass(frozen=True)
class ConceptView:
    """One concept with everything the Concepts screen shows about it."""

    id: int
    name: str
    category: str
    description: str
    candidates: tuple[tuple[str, float | None, bool], ...] = ()  # (detailed text, score, chosen)
    references: tuple[int, ...] = ()
    confirmed: tuple[int, ...] = ()
    negatives: tuple[int, ...] = ()
    suggested: tuple[int, ...] = ()
    threshold: str = ""  # the stage-2 threshold in use and where it comes from (`calibration.explain`)


def matches(row: PhotoRow, text: str, tags: PhotoTags = ()) -> bool:
    """A filter hit: every space-separated token matches (folder, date, range, concept or tag status).

    A token is a date range `FROM..TO` (prefixes, both ends included, either may be empty), a concept
    `<Name>` (tagged, not rejected), `is:STATUS` (a tag with that status, or `is:untagged`), otherwise a
    date prefix or text in the path (any case).

    >>> row = {"taken_at": "2024-06-03T10:00:00", "path": "/pics/Beach/a.jpg"}
    >>> matches(row, "2024-06"), matches(row, "beach"), matches(row, "2023")
    (True, True, False)
    >>> matches(row, "2024-01..2024-06"), matches(row, "..2024-05"), matches(row, "2024-06-04..")
    (True, False, False)
    >>> tags = (("Bo", "suggested"),)
    >>> matches(row, "<bo> is:suggested", tags), matches(row, "<Mug>", tags), matches(row, "is:untagged", tags)
    (True, False, False)
    """
    return all(_token_matches(row, token, tags) for token in text.split())


def _token_matches(row: PhotoRow, token: str, tags: PhotoTags) -> bool:
    day = row["taken_at"]
    if ".." in token:
        lo, hi = token.split("..", 1)
        return (not lo or day[: len(lo)] >= lo) and (not hi or day[: len(hi)] <= hi)
    if token.startswith("<") and token.endswith(">") and len(token) > 2:
        key = name_key(token)
        return any(name_key(c) == key and s != "rejected" for c, s in tags)
    if token.startswith("is:"):
        wanted = token[3:].casefold()
        return not tags if wanted == "untagged" else any(s == wanted for _, s in tags)
    return day.startswith(token) or token.casefold() in (row["path"] or "").casefold()


def filter_rows(rows: list[PhotoRow], text: str, tags: dict[int, PhotoTags] | None = None) -> list[PhotoRow]:
    tags = tags or {}
    return [r for r in rows if matches(r, text, tags.get(r["id"], ()))]


def photo_cells(row: PhotoRow) -> tuple[str, str, str, str, str]:
    """(id, date, size, camera, path) as the library table shows them; size is width x height."""
    return (
        str(row["id"]),
        row["taken_at"][:10],
        f"{row['width']}x{row['height']}",
        row["camera"] or "-",
        row["path"] or "(missing)",
    )


def photo_meta(row: PhotoRow) -> str:
    taken = row["taken_at"].replace("T", " ")
    source = "" if row["taken_at_source"] == "exif" else f" (from {row['taken_at_source']})"
    return (
        f"photo {row['id']}\n"
        f"date:       {taken}{source}\n"
        f"camera:     {row['camera'] or '-'}\n"
        f"dimensions: {row['width']} x {row['height']} {row['format']}\n"
        f"path:       {row['path'] or '(missing)'}"
    )


def tag_cells(tag: Tag) -> tuple[str, str, str, str]:
    return (tag.concept, tag.status, score_text(tag), (tag.reasoning or "").replace("\n", " "))


def concept_details(c: ConceptView) -> str:
    ids = lambda xs: ", ".join(map(str, xs)) or "-"  # noqa: E731
    lines = [f"<{c.name}>  ({c.category})", "", c.description or "(no description yet)", ""]
    lines.append("description candidates:" if c.candidates else "description candidates: none")
    for text, score, chosen in c.candidates:
        mark = "*" if chosen else " "
        lines.append(f" {mark} {'-' if score is None else f'{score:.2f}'}  {text}")
    lines += ["", f"references: {ids(c.references)}", f"confirmed:  {ids(c.confirmed)}"]
    lines.append(f"negatives:  {ids(c.negatives)}")
    lines.append(f"suggested:  {ids(c.suggested)}")
    if c.threshold:
        lines.append(f"stage-2 threshold: {c.threshold}")
    return "\n".join(lines)
