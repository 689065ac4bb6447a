"""How the product says a number of things: owns `count` ("1 photo", "2 photos"), so that no message reads
"1 photos tagged, 1 suggestions" (what `rrg watch --tag` says for every single new photo)."""

from __future__ import annotations


def count(n: int, noun: str, plural: str | None = None) -> str:
    """`n` and the noun in its number; `plural` where adding "s" is wrong.

    >>> count(1, "photo"), count(0, "photo"), count(2, "new photo"), count(1, "new path", "new paths")
    ('1 photo', '0 photos', '2 new photos', '1 new path')
    >>> count(3, "VLM call"), count(1, "error"), count(2, "bad file")
    ('3 VLM calls', '1 error', '2 bad files')
    """
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
