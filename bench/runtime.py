"""Benchmark of the multimodal runtime: wrapper overhead, image cache and prefix reuse, real-size cost.

Run: `.venv/bin/python bench/runtime.py` (the tiny model) or `--size 2b` (a random-weight model with
Qwen2-VL-2B's shapes, built once and cached outside the repo: its cost per photo equals the real model's).
Prints one table; every speed is also a ratio against a baseline measured in the same run:

- load: seconds to load the GGUF pair;
- per call: our wrapper on the plain path vs the same chat made directly with llama-cpp-python's
  MTMDChatHandler (goal: ratio <= 1.10);
- "1 photo x 10 concepts" and "10 photos x 1 prompt": plain path vs ours (image cache + KV prefix reuse);
- with --size 2b: seconds per photo for the stock handler and for ours at 64 and 256 image tokens, and
  peak memory.
"""

from __future__ import annotations

import argparse
import base64
import io
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


def timed(fn, repeat: int) -> float:
    """Median seconds of `repeat` calls (after one warm-up call)."""
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
    repeat = args.repeat if args.size == "tiny" else 1
    question = "Is <c0> in this photo? Answer Yes or No."
    rows: list[tuple[str, str, str]] = []

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
    rows.append(("load + first call: llama-cpp-python", f"{direct_load:7.2f} s", "1.00 (baseline)"))
    rows.append(("load + first call: ours", f"{ours_load:7.2f} s", f"{ours_load / direct_load:.2f}"))

    images = [photo(i, side) for i in range(10)]
    d = timed(lambda: direct_call(llm, images[1], question, 8), repeat)
    o = timed(lambda: ours_call(plain, images[1], question, 8), repeat)
    rows.append(("one call (image + 8 tokens): llama-cpp-python", f"{d * 1000:7.1f} ms", "1.00 (baseline)"))
    rows.append(("one call: ours, plain path", f"{o * 1000:7.1f} ms", f"{o / d:.2f} (goal <= 1.10)"))
    llm.close()

    # Both models are loaded and warm before anything is timed; every timed photo is new to both.
    fast = LlamaVisionModel(cfg)
    cs = concepts(10)
    warm = ImageRef(photo(99, side))
    tasks.recognize(fast, warm, cs[0], reasoning=False)
    fresh_photos = iter(ImageRef(photo(100 + i, side)) for i in range(1000))

    def one_photo_ten_concepts(model):
        img = next(fresh_photos)
        return [tasks.recognize(model, img, c, reasoning=False) for c in cs]

    p10 = timed(lambda: one_photo_ten_concepts(plain), repeat)
    f10 = timed(lambda: one_photo_ten_concepts(fast), repeat)
    rows.append(("1 photo x 10 concepts: plain", f"{p10:7.3f} s", "1.00 (baseline)"))
    rows.append(("1 photo x 10 concepts: ours (cache)", f"{f10:7.3f} s", f"{p10 / f10:.1f}x faster"))

    def ten_photos_one_prompt(model):
        return [tasks.recognize(model, next(fresh_photos), cs[0], reasoning=False) for _ in range(10)]

    p_many = timed(lambda: ten_photos_one_prompt(plain), repeat)
    f_many = timed(lambda: ten_photos_one_prompt(fast), repeat)
    rows.append(("10 photos x 1 prompt: plain", f"{p_many:7.3f} s", "1.00 (baseline)"))
    rows.append(("10 photos x 1 prompt: ours (prefix reuse)", f"{f_many:7.3f} s", f"{p_many / f_many:.2f}x faster"))

    if args.size == "2b":
        refs = [ImageRef(b) for b in images]
        per_photo = p_many / 10
        rows.append(("2b: s/photo, model's own image tokens (plain)", f"{per_photo:7.2f} s", "1.00 (baseline)"))
        for cap in (256, 64):
            capped = LlamaVisionModel(
                LlamaConfig(
                    model=pair.text, mmproj=pair.mmproj, n_ctx=4096, n_threads=args.threads, image_max_tokens=cap
                )
            )
            t = time.perf_counter()
            for r in refs[:3]:
                tasks.recognize(capped, r, cs[0], reasoning=False)
            s = (time.perf_counter() - t) / 3
            rows.append((f"2b: s/photo, ours at {cap} image tokens", f"{s:7.2f} s", f"{per_photo / s:.1f}x faster"))
            capped.close()
    rows.append(("peak RSS of this process", f"{peak_rss_mb():7.0f} MB", ""))
    for m in (plain, fast):
        m.close()

    width = max(len(r[0]) for r in rows)
    print(f"model: {pair.text.name} + {pair.mmproj.name}, {args.threads} threads, {side}px photos\n")
    print(f"{'measure':<{width}}  {'value':>10}  ratio")
    for name, value, ratio in rows:
        print(f"{name:<{width}}  {value:>10}  {ratio}")


if __name__ == "__main__":
    main()
