"""Benchmark of the multimodal runtime: wrapper overhead, image cache and prefix reuse, real-size cost.

Run: `.venv/bin/python bench/runtime.py` (the tiny model) or `--size 2b` (a random-weight model with
Qwen2-VL-2B's shapes, built once and cached outside the repo: its cost per photo equals the real model's).
Prints one table; every speed is also a ratio against a baseline measured in the same run, and the last
column says how many cores other processes kept busy meanwhile (above ~0.1 on a small machine, that
stretch's timings and ratios are not trustworthy: rerun on a quiet machine):

- load: seconds to load the GGUF pair;
- per call: our wrapper on the plain path vs the same chat made directly with llama-cpp-python's
  MTMDChatHandler (goal: ratio <= 1.10);
- "1 photo x N concepts" and "N photos x 1 prompt": plain path vs ours (image cache + KV prefix reuse);
- with --size 2b: seconds per photo for the stock handler, our plain path, and ours at 256 and 64 image
  tokens (the image tokens each one used in brackets), the reasoning follow-up a tag gets (its prompt
  cached), and peak memory.

At --size 2b a 448 px photo costs about 15 s on two cores, so that run times each phase once without
a warm-up call (both models are already warm from their first call) and uses N = 5: it encodes 27 photos
(3 of them at 64 tokens), about 7 minutes on two cores once the model is cached (its first build: 2 more).
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def photo(seed: int, size: int) -> bytes:
    from tests.conftest import draw_photo

    buf = io.BytesIO()
    draw_photo(seed, (size, size)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class OtherLoad:
    """Cores that other processes kept busy since the last `mark()`: machine busy time minus our CPU time."""

    def __init__(self) -> None:
        self._first = self._last = self._now()

    @staticmethod
    def _now() -> tuple[float, float, float] | None:
        try:
            v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        except (OSError, ValueError):
            return None
        busy = (v[0] + v[1] + v[2] + v[5] + v[6]) / os.sysconf("SC_CLK_TCK")  # user nice system irq softirq
        t = os.times()
        return busy, t.user + t.system, time.perf_counter()

    @staticmethod
    def _cores(a, b) -> float:
        if a is None or b is None:
            return float("nan")
        return max(0.0, (b[0] - a[0]) - (b[1] - a[1])) / max(1e-9, b[2] - a[2])

    def mark(self) -> str:
        now = self._now()
        cores, self._last = self._cores(self._last, now), now
        return f"{cores:.2f}"

    def total(self) -> float:
        return self._cores(self._first, self._now())


def timed(fn, repeat: int, *, warmup: bool = True) -> float:
    """Median seconds of `repeat` calls (after one warm-up call if `warmup`)."""
    if warmup:
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def concepts(n: int):
    from rrg_local.vlm.prompts import ConceptText

    cats = ["dog", "mug", "toy car", "backpack", "plant pot"]
    return [
        ConceptText(
            f"c{i}",
            cats[i % 5],
            f"A photo of a {cats[i % 5]} number {i}",
            f"The {cats[i % 5]} has mark {i} and a stripe.",
        )
        for i in range(n)
    ]


def direct_call(llm, image: bytes, question: str, max_tokens: int):
    from rrg_local.vlm.prompts import LISTENER_SYSTEM

    uri = "data:image/jpeg;base64," + base64.b64encode(image).decode()
    return llm.create_chat_completion(
        messages=[
            {"role": "system", "content": LISTENER_SYSTEM},
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": uri}}, {"type": "text", "text": question}],
            },
        ],
        max_tokens=max_tokens,
        temperature=0.0,
        repeat_penalty=1.0,
    )


def ours_call(model, image: bytes, question: str, max_tokens: int):
    from rrg_local.vlm.prompts import LISTENER_SYSTEM
    from rrg_local.vlm.protocol import Generate, ImageRef, Message

    msgs = [Message.of("system", LISTENER_SYSTEM), Message.of("user", ImageRef(image), question)]
    return model.run(msgs, [Generate(max_tokens=max_tokens)])


def build_model(size: str):
    from trainer.tiny import tiny_gguf

    if size == "tiny":
        return tiny_gguf().pair("f16"), 112
    from trainer.tiny import QWEN2VL_2B

    return tiny_gguf(QWEN2VL_2B, quant=("Q4_K_M",), mmproj_quant=("Q8_0",)).pair("Q4_K_M", "Q8_0"), 448


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=["tiny", "2b"], default="tiny")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import MTMDChatHandler

    from rrg_local.vlm import tasks
    from rrg_local.vlm.llama import LlamaConfig, LlamaVisionModel, route_logs
    from rrg_local.vlm.protocol import ImageRef

    route_logs()  # llama.cpp's logs go to a logger, so the table stays readable
    pair, side = build_model(args.size)
    big = args.size != "tiny"
    repeat = 1 if big else args.repeat
    warmup = not big  # at 2b a warm-up call would double every phase; the models are warm from their first call
    n = 5 if big else 10  # photos per "N photos" phase and concepts per "1 photo" phase
    question = "Is <c0> in this photo? Answer Yes or No."
    rows: list[tuple[str, str, str, str]] = []
    others = OtherLoad()

    t = time.perf_counter()
    handler = MTMDChatHandler(clip_model_path=str(pair.mmproj), verbose=False)
    llm = Llama(
        model_path=str(pair.text),
        chat_handler=handler,
        n_ctx=4096,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        flash_attn=True,
        verbose=False,
    )
    direct_call(llm, photo(0, side), question, 1)
    direct_load = time.perf_counter() - t

    cfg = LlamaConfig(model=pair.text, mmproj=pair.mmproj, n_ctx=4096, n_threads=args.threads, image_max_tokens=None)
    t = time.perf_counter()
    plain = LlamaVisionModel(cfg, cache=False)
    ours_call(plain, photo(0, side), question, 1)
    ours_load = time.perf_counter() - t
    busy = others.mark()
    rows.append(("load + first call: llama-cpp-python", f"{direct_load:7.2f} s", "1.00 (baseline)", busy))
    rows.append(("load + first call: ours", f"{ours_load:7.2f} s", f"{ours_load / direct_load:.2f}", busy))

    images = [photo(i, side) for i in range(1, 4)]  # photo 0 was the first call's
    d = timed(lambda: direct_call(llm, images[0], question, 8), repeat, warmup=warmup)
    o = timed(lambda: ours_call(plain, images[0], question, 8), repeat, warmup=warmup)
    busy = others.mark()
    rows.append(("one call (image + 8 tokens): llama-cpp-python", f"{d * 1000:7.1f} ms", "1.00 (baseline)", busy))
    rows.append(("one call: ours, plain path", f"{o * 1000:7.1f} ms", f"{o / d:.2f} (goal <= 1.10)", busy))
    llm.close()

    # Both models are loaded and warm before anything is timed; every timed photo is new to both.
    fast = LlamaVisionModel(cfg)
    cs = concepts(n)
    warm = ImageRef(photo(99, side))
    tasks.recognize(fast, warm, cs[0], reasoning=False)
    others.mark()
    fresh_photos = iter(ImageRef(photo(100 + i, side)) for i in range(1000))

    def one_photo_n_concepts(model):
        img = next(fresh_photos)
        return [tasks.recognize(model, img, c, reasoning=False) for c in cs]

    plain_before = (plain.stats.image_encodes, plain.stats.image_tokens_encoded)
    p10 = timed(lambda: one_photo_n_concepts(plain), repeat, warmup=warmup)
    f10 = timed(lambda: one_photo_n_concepts(fast), repeat, warmup=warmup)
    busy = others.mark()
    rows.append((f"1 photo x {n} concepts: plain", f"{p10:7.3f} s", "1.00 (baseline)", busy))
    rows.append((f"1 photo x {n} concepts: ours (cache)", f"{f10:7.3f} s", f"{p10 / f10:.1f}x faster", busy))

    def n_photos_one_prompt(model):
        return [tasks.recognize(model, next(fresh_photos), cs[0], reasoning=False) for _ in range(n)]

    p_many = timed(lambda: n_photos_one_prompt(plain), repeat, warmup=warmup)
    f_many = timed(lambda: n_photos_one_prompt(fast), repeat, warmup=warmup)
    busy = others.mark()
    rows.append((f"{n} photos x 1 prompt: plain", f"{p_many:7.3f} s", "1.00 (baseline)", busy))
    rows.append(
        (f"{n} photos x 1 prompt: ours (prefix reuse)", f"{f_many:7.3f} s", f"{p_many / f_many:.2f}x faster", busy)
    )

    if big:
        # Seconds per new photo (encode + prefill + the answer), each against the stock handler's one call.
        encodes = plain.stats.image_encodes - plain_before[0]
        plain_tokens = (plain.stats.image_tokens_encoded - plain_before[1]) // max(1, encodes)
        per_photo = p_many / n
        rows.append(("2b: s/photo, stock handler (1 call, 8 tokens)", f"{d:7.2f} s", "1.00 (baseline)", ""))
        rows.append(
            (
                f"2b: s/photo, ours plain [{plain_tokens} image tokens]",
                f"{per_photo:7.2f} s",
                f"{d / per_photo:.2f}x faster",
                "",
            )
        )
        # The reasoning follow-up of a tag: the recognition prompt cached, at most 48 tokens generated (random
        # weights rarely close the string early: an upper bound).
        from rrg_local.vlm import prompts

        ref = ImageRef(images[0])
        tasks.recognize(fast, ref, cs[0], reasoning=False)
        others.mark()
        t = time.perf_counter()
        tasks.explain(fast, prompts.recognition(ref, cs[0]), "Yes")
        e = time.perf_counter() - t
        rows.append(
            (
                "2b: reasoning follow-up, prompt cached [<= 48 tokens]",
                f"{e:7.2f} s",
                f"{d / e:.2f}x faster",
                others.mark(),
            )
        )
        for cap in (256, 64):
            capped = LlamaVisionModel(
                LlamaConfig(
                    model=pair.text, mmproj=pair.mmproj, n_ctx=4096, n_threads=args.threads, image_max_tokens=cap
                )
            )
            capped.tokenize("load")  # load outside the timing: only photos are timed
            others.mark()
            t = time.perf_counter()
            for r in (ImageRef(b) for b in images):
                tasks.recognize(capped, r, cs[0], reasoning=False)
            s = (time.perf_counter() - t) / len(images)
            tokens = capped.stats.image_tokens_encoded // max(1, capped.stats.image_encodes)
            rows.append(
                (
                    f"2b: s/photo, ours at cap {cap} [{tokens} image tokens]",
                    f"{s:7.2f} s",
                    f"{d / s:.2f}x faster",
                    others.mark(),
                )
            )
            capped.close()
    rows.append(("peak RSS of this process", f"{peak_rss_mb():7.0f} MB", "", ""))
    rows.append(("other processes, whole run (cores)", f"{others.total():10.2f}", "", ""))
    for m in (plain, fast):
        m.close()

    width = max(len(r[0]) for r in rows)
    print(f"model: {pair.text.name} + {pair.mmproj.name}, {args.threads} threads, {side}px photos\n")
    rwidth = max(len(r[2]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>10}  {'ratio':<{rwidth}}  others")
    for name, value, ratio, busy in rows:
        print(f"{name:<{width}}  {value:>10}  {ratio:<{rwidth}}  {busy}".rstrip())


if __name__ == "__main__":
    main()
