"""Benchmark of the photo index: first-index speed against the raw decode limit, rescan speed, memory, queries.

Run: `.venv/bin/python bench/index.py [--count 500] [--megapixels 12]`. Prints one table. Every speed is
also given as a ratio against a baseline measured in the same run, since absolute numbers depend on the
machine. The generated library is cached under ~/.cache/rrg-local-bench (it takes minutes to draw).

Goals (issue 2): first index >= 70% of the decode limit; rescan >= 5,000 files/s; peak memory flat in
library size; date-range query on a 100,000-row index p50 < 5 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_library(dest: Path, count: int, megapixels: float) -> list[Path]:
    """Photo-like JPEGs (textured, so they compress like camera files), each with EXIF date and camera."""
    marker = dest / f".done-{count}"
    if marker.exists():
        return sorted(dest.rglob("*.jpg"))
    dest.mkdir(parents=True, exist_ok=True)
    w = int((megapixels * 1e6 * 4 / 3) ** 0.5)
    h = int(w * 3 / 4)
    rng = np.random.default_rng(0)
    base = rng.normal(128, 40, (h // 4, w // 4, 3)).clip(0, 255).astype(np.uint8)
    texture = Image.fromarray(base).resize((w, h), Image.Resampling.BILINEAR)
    noise = Image.fromarray(rng.normal(0, 12, (h, w, 3)).clip(-128, 127).astype(np.int8).view(np.uint8))
    texture = Image.blend(texture, noise, 0.15)
    prng = random.Random(0)
    start = datetime(2015, 1, 1)
    paths = []
    for i in range(count):
        img = texture.copy()
        draw = ImageDraw.Draw(img)
        for _ in range(8):
            x, y = prng.randrange(w), prng.randrange(h)
            r = prng.randint(w // 30, w // 6)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(prng.randint(0, 255) for _ in range(3)))
        exif = Image.Exif()
        exif[271], exif[272] = "Canon", "Canon EOS 90D"
        exif.get_ifd(0x8769)[36867] = (start + timedelta(hours=7 * i)).strftime("%Y:%m:%d %H:%M:%S")
        path = dest / f"{i // 100:03d}" / f"IMG_{i:05d}.jpg"
        path.parent.mkdir(exist_ok=True)
        img.save(path, "JPEG", quality=92, exif=exif.tobytes())
        paths.append(path)
    marker.touch()
    return paths


def decode_limit(paths: list[Path], thumb_size: int) -> float:
    """Files/s for the bare minimum: Pillow opening each file and decoding it at the thumbnail's draft scale."""
    t = time.perf_counter()
    for p in paths:
        with Image.open(p) as img:
            img.draft("RGB", (thumb_size, thumb_size))
            img.load()
    return len(paths) / (time.perf_counter() - t)


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: the latter survives exec and so reports the parent's."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_index(lib: str, home: str, workers: int, repeat: int) -> None:
    """Runs in a fresh process: index `lib` (then rescan `repeat` times); prints rates and peak RSS."""
    from dataclasses import replace

    from rrg_local.config import Settings
    from rrg_local.db import open_db
    from rrg_local.library.scan import Scanner

    settings = replace(Settings(home=Path(home)), scan_workers=workers)
    db = open_db(settings.db_path)
    scanner = Scanner(db, settings)
    t = time.perf_counter()
    first = scanner.scan([lib])
    first_rate = first.seen / (time.perf_counter() - t)
    rescans = []
    for _ in range(repeat):
        t = time.perf_counter()
        again = scanner.scan([lib])
        rescans.append(again.seen / (time.perf_counter() - t))
        assert again.unchanged == again.seen
    rss = peak_rss_mb()
    print(
        json.dumps(
            {"first": first_rate, "rescan": max(rescans) if rescans else 0, "rss_mb": rss, "photos": first.new_photos}
        )
    )


def run_child(lib: Path, workers: int, repeat: int = 0) -> dict:
    with tempfile.TemporaryDirectory() as home:
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(lib), home, str(workers), str(repeat)],
            capture_output=True,
            text=True,
            check=True,
        )
    return json.loads(out.stdout)


def query_bench(rows: int = 100_000, queries: int = 200) -> tuple[float, float]:
    """p50 and p95 ms of `list_photos(since, until)` for one-month ranges on a `rows`-photo index."""
    from rrg_local.db import open_db
    from rrg_local.library.query import list_photos

    with tempfile.TemporaryDirectory() as tmp:
        db = open_db(Path(tmp) / "q.db")
        start = datetime(2010, 1, 1)
        rng = random.Random(1)
        now = "2024-01-01T00:00:00Z"
        photos, paths = [], []
        for i in range(rows):
            taken = (start + timedelta(minutes=rng.randrange(15 * 365 * 24 * 60))).isoformat()
            photos.append((i + 1, f"{i:064x}", 1, 1, 1, "JPEG", taken, "exif", 1, f"{i:016x}", "t", 0, now, now))
            raw = f"/photos/{i // 1000}/IMG_{i}.jpg".encode()
            paths.append((raw, raw.decode(), i + 1, 1, 1, 0, 1, now))
        db.conn.executemany(
            f"INSERT INTO photos (id, hash, size, width, height, format, taken_at, taken_at_source,"
            f" orientation, phash, thumb, missing, added_at, updated_at) VALUES ({','.join('?' * 14)})",
            photos,
        )
        db.conn.executemany(
            "INSERT INTO paths (raw, path, photo_id, size, mtime_ns, missing, seen_scan, updated_at)"
            " VALUES (?,?,?,?,?,?,?,?)",
            paths,
        )
        db.conn.commit()
        times = []
        for _ in range(queries):
            y, m = rng.randint(2010, 2024), rng.randint(1, 12)
            t = time.perf_counter()
            found = list_photos(db, since=f"{y}-{m:02d}", until=f"{y}-{m:02d}")
            times.append((time.perf_counter() - t) * 1000)
            assert found
        db.close()
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95)]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_index(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--megapixels", type=float, default=12.0)
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "rrg-local-bench")
    args = ap.parse_args()

    lib = args.cache / f"lib-{args.count}-{args.megapixels:g}mp"
    t = time.perf_counter()
    paths = make_library(lib, args.count, args.megapixels)
    gen_s = time.perf_counter() - t
    size_mb = sum(p.stat().st_size for p in paths) / 1e6
    print(f"library: {len(paths)} JPEGs, {args.megapixels:g} MP, {size_mb:.0f} MB ({gen_s:.0f}s to prepare)")

    small = lib.parent / f"{lib.name}-quarter"
    if not small.exists():
        small.mkdir()
        for p in paths[: len(paths) // 4]:
            (small / p.name).symlink_to(p)

    cores = len(os.sched_getaffinity(0))
    limit = decode_limit(paths, 320)
    one = run_child(lib, workers=1)
    full = run_child(lib, workers=cores, repeat=3)
    quarter = run_child(small, workers=cores)
    p50, p95 = query_bench()

    rows = [
        ("decode limit (Pillow draft decode, 1 thread)", f"{limit:8.1f} photos/s", "1.00 (baseline)"),
        ("first index, 1 worker", f"{one['first']:8.1f} photos/s", f"{one['first'] / limit:.2f} of limit"),
        (
            f"first index, {cores} workers (default)",
            f"{full['first']:8.1f} photos/s",
            f"{full['first'] / limit:.2f} of limit",
        ),
        ("rescan, unchanged library", f"{full['rescan']:8.0f} files/s", f"{full['rescan'] / limit:.0f}x limit"),
        (f"peak RSS, {len(paths) // 4} photos", f"{quarter['rss_mb']:8.0f} MB", "1.00 (baseline)"),
        (
            f"peak RSS, {len(paths)} photos",
            f"{full['rss_mb']:8.0f} MB",
            f"{full['rss_mb'] / quarter['rss_mb']:.2f}x for 4x photos",
        ),
        ("date-range query, 100k photos, p50", f"{p50:8.2f} ms", f"p95 {p95:.2f} ms"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':<{width}}  {'value':>18}  ratio")
    for name, value, ratio in rows:
        print(f"{name:<{width}}  {value:>18}  {ratio}")


if __name__ == "__main__":
    main()
