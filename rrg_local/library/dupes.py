"""Near-duplicate grouping by perceptual hash (bursts, re-encodes, resized copies).

`group_near_duplicates()` is pure: it takes (photo_id, phash) pairs and returns groups. It avoids the
all-pairs comparison with the pigeonhole trick: two 64-bit hashes within distance d agree exactly on
at least one of d + 1 disjoint chunks, so only photos sharing a chunk value are compared.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable


def _chunks(value: int, n: int) -> list[tuple[int, int]]:
    bounds = [round(i * 64 / n) for i in range(n + 1)]
    return [(i, (value >> bounds[i]) & ((1 << (bounds[i + 1] - bounds[i])) - 1)) for i in range(n)]


def group_near_duplicates(items: Iterable[tuple[int, str]], max_distance: int = 6) -> list[list[int]]:
    """Connected groups (size >= 2) of photos whose hashes are within `max_distance` bits.

    >>> group_near_duplicates([(1, "ffff0000ffff0000"), (2, "ffff0000ffff0001"), (3, "0123456789abcdef")])
    [[1, 2]]
    """
    hashes = {pid: int(h, 16) for pid, h in items}
    n_chunks = max_distance + 1
    buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
    for pid, value in hashes.items():
        for key in _chunks(value, n_chunks):
            buckets[key].append(pid)
    parent = {pid: pid for pid in hashes}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for members in buckets.values():
        for i, a in enumerate(members):
            for b in members[i + 1 :]:
                if find(a) != find(b) and (hashes[a] ^ hashes[b]).bit_count() <= max_distance:
                    parent[find(a)] = find(b)
    groups: dict[int, list[int]] = defaultdict(list)
    for pid in hashes:
        groups[find(pid)].append(pid)
    return sorted((sorted(g) for g in groups.values() if len(g) > 1), key=lambda g: g[0])
