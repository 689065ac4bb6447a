"""The in-process llama.cpp runtime: the only module that imports `llama_cpp`.

`LlamaVisionModel` loads a text GGUF and its mmproj GGUF lazily under a lock, renders chats with the
GGUF's own chat template, and drives libmtmd's low-level API itself instead of the stock chat handlers,
for two savings that dominate at real model sizes:

- an image is encoded once: the vision encoder's output is kept in an LRU cache keyed by the prepared
  pixels, and later prompts decode those embeddings straight into the KV cache;
- the KV cache is kept between calls: a new prompt only evaluates what differs from the last one, so
  fixed instructions, and a photo followed by one concept after another, are not recomputed.

`cache=False` gives the plain path (clear the KV cache, re-encode every image), which tests use to prove
that the fast path gives the same results. llama.cpp and libmtmd logs go to the `rrg_local.llama` logger,
never to the terminal.
"""

from __future__ import annotations

import codecs
import ctypes
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rrg_local.library.images import ImageError
from rrg_local.vlm.answers import option_probs
from rrg_local.vlm.images import PreparedImage, prepare
from rrg_local.vlm.protocol import (
    Choice,
    Choose,
    Force,
    Generate,
    ImageRef,
    Message,
    ModelInfo,
    OnText,
    Score,
    Scored,
    ScriptResult,
    Step,
    VisionError,
)

log = logging.getLogger("rrg_local.llama")
# ggml_log_level: NONE=0, DEBUG=1, INFO=2, WARN=3, ERROR=4, CONT=5 (continues the previous line's level).
_GGML_LEVELS = {1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}
_last_level = logging.DEBUG
_log_callback = None  # kept referenced: llama.cpp holds a raw pointer to it


class ModelError(VisionError):
    """A model that cannot be loaded or run; the message names the file or the failing step."""


def pool_tokens(tokens: np.ndarray) -> np.ndarray:
    """A photo's retrieval vector from its image tokens: the max over tokens, L2-normalised (pure).

    Max rather than mean: a person's concept fills part of the photo, and the mean is dominated by the
    background. On the demo library (60 photos of 6 objects in look-alike pairs, varied scenes; the shipped
    demo model's tower) a photo's nearest photo showed the same object 53% of the time with max, 38% with mean.

    >>> [round(float(x), 3) for x in pool_tokens(np.array([[3.0, 0.0], [0.0, 4.0], [-9.0, 0.0]]))]
    [0.6, 0.8]
    """
    emb = tokens.max(axis=0)
    norm = float(np.linalg.norm(emb))
    return (emb / norm if norm > 0 else emb).astype(np.float32)


@dataclass(frozen=True)
class LlamaConfig:
    model: Path
    mmproj: Path
    name: str = ""
    n_ctx: int = 4096
    n_batch: int = 512
    n_threads: int = 0  # 0: the cores that are free now
    image_max_tokens: int | None = 256  # caps the vision encoder's cost; None: the model's own limit
    image_min_tokens: int | None = None
    max_side: int = 1024  # photos are downscaled to this long side before libmtmd sees them
    max_pixels: int = 150_000_000
    flash_attn: bool = True  # off, the vision encoder reserves gigabytes
    embed_cache_mb: int = 256
    use_gpu: bool = True
    lora: Path | None = None  # a GGUF LoRA adapter applied at load time (`rrg-train export` writes one)
    # "all": the LoRA changes every call; "speaker": only describing (`run(..., role="speaker")`), so the
    # listener stays the base model, as in RRG training (switching drops the KV cache, not the image cache).
    lora_scope: str = "all"


def free_cores() -> int:
    """Cores not busy right now (affinity minus the 1-minute load), at least 1: oversubscription is ruinous."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        busy = round(os.getloadavg()[0])
    except OSError:
        busy = 0
    return max(1, min(cores, cores - busy + 1) if busy else cores)


def route_logs() -> None:
    """Send llama.cpp and libmtmd logs to our logger (idempotent)."""
    global _log_callback
    if _log_callback is not None:
        return
    import llama_cpp
    import llama_cpp.mtmd_cpp as mtmd

    @llama_cpp.llama_log_callback
    def _cb(level: int, text: bytes, _user: ctypes.c_void_p) -> None:
        global _last_level
        if level != 5:
            _last_level = _GGML_LEVELS.get(level, logging.DEBUG)
        msg = text.decode("utf-8", "replace").rstrip()
        if msg:
            log.log(_last_level, msg)

    _log_callback = _cb
    log.addHandler(logging.NullHandler())  # no handler configured: drop, never Python's stderr fallback
    llama_cpp.llama_log_set(_cb, ctypes.c_void_p(0))
    mtmd.mtmd_log_set(_cb, ctypes.c_void_p(0))
    mtmd.mtmd_helper_log_set(_cb, ctypes.c_void_p(0))


def check_gguf(path: Path, what: str) -> None:
    """One clear error for a missing, unreadable or non-GGUF file."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except FileNotFoundError as exc:
        raise ModelError(f"{what} not found: {path}") from exc
    except OSError as exc:
        raise ModelError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    if magic != b"GGUF":
        raise ModelError(f"{what} is not a GGUF file: {path}")


@dataclass
class Stats:
    image_encodes: int = 0
    image_tokens_encoded: int = 0
    image_cache_hits: int = 0
    tokens_evaluated: int = 0
    tokens_reused: int = 0


@dataclass
class _Segment:
    kind: str  # "text" or "image"
    tokens: list[int] = field(default_factory=list)
    key: str = ""
    chunk: object = None
    n_tokens: int = 0


class LlamaVisionModel:
    """A `VisionModel` on llama.cpp. Thread-safe: calls are serialised on one context."""

    def __init__(self, config: LlamaConfig, *, cache: bool = True):
        check_gguf(config.model, "model")
        check_gguf(config.mmproj, "mmproj")
        if config.lora is not None:
            check_gguf(config.lora, "LoRA adapter")
        if config.lora_scope not in ("all", "speaker"):
            raise ValueError(f"lora_scope must be 'all' or 'speaker', not {config.lora_scope!r}")
        self.config = config
        self.cache = cache
        self.stats = Stats()
        self._lock = threading.RLock()
        self._llm = None
        self._mctx = None
        self._batch = None
        self._items: list[tuple] = []  # the KV cache: ("t", token, pos) / ("i", key, pos, n_pos, n_tokens)
        self._n_past = 0
        self._lora_on = config.lora is not None  # llama-cpp-python applies it at load
        self._embeds: OrderedDict[str, np.ndarray] = OrderedDict()
        self._embed_bytes = 0
        self.info = ModelInfo(
            name=config.name or config.model.stem,
            n_ctx=config.n_ctx,
            n_embd=0,
            image_max_tokens=config.image_max_tokens,
        )

    # ---- lifecycle ----------------------------------------------------------------------------

    def _ensure_loaded(self) -> None:
        if self._llm is not None:
            return
        route_logs()
        import llama_cpp
        import llama_cpp.mtmd_cpp as mtmd

        cfg = self.config
        threads = cfg.n_threads or free_cores()
        try:
            llm = llama_cpp.Llama(
                model_path=str(cfg.model),
                n_ctx=cfg.n_ctx,
                n_batch=cfg.n_batch,
                n_ubatch=cfg.n_batch,
                n_threads=threads,
                n_threads_batch=threads,
                flash_attn=cfg.flash_attn,
                verbose=False,
                lora_path=str(cfg.lora) if cfg.lora else None,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelError(f"cannot load model {cfg.model}: {exc}") from exc
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = cfg.use_gpu
        params.print_timings = False
        params.warmup = False
        params.n_threads = threads
        params.flash_attn_type = (
            llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if cfg.flash_attn else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        if cfg.image_max_tokens:
            params.image_max_tokens = cfg.image_max_tokens
        if cfg.image_min_tokens:
            params.image_min_tokens = cfg.image_min_tokens
        mctx = mtmd.mtmd_init_from_file(str(cfg.mmproj).encode(), llm.model, params)
        if not mctx:
            llm.close()
            raise ModelError(f"cannot load mmproj {cfg.mmproj} (is it the projector for {cfg.model.name}?)")
        if not mtmd.mtmd_support_vision(mctx):
            mtmd.mtmd_free(mctx)
            llm.close()
            raise ModelError(f"mmproj {cfg.mmproj} has no vision encoder")
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            mtmd.mtmd_free(mctx)
            llm.close()
            raise ModelError(f"model {cfg.model} has no chat template (tokenizer.chat_template)")
        self._template = _compile_template(template)
        self._llm, self._mctx = llm, mctx
        self._vocab = llama_cpp.llama_model_get_vocab(llm.model)
        self._n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        self._n_embd = llama_cpp.llama_model_n_embd_inp(llm.model)
        self._batch = llama_cpp.llama_batch_init(cfg.n_batch, 0, 1)
        self._marker = mtmd.mtmd_default_marker().decode()
        self.info = ModelInfo(
            name=self.info.name, n_ctx=cfg.n_ctx, n_embd=self._n_embd, image_max_tokens=cfg.image_max_tokens
        )

    def close(self) -> None:
        with self._lock:
            if self._llm is None:
                return
            import llama_cpp
            import llama_cpp.mtmd_cpp as mtmd

            llama_cpp.llama_batch_free(self._batch)
            mtmd.mtmd_free(self._mctx)
            self._llm.close()
            self._llm = self._mctx = self._batch = None
            self._items, self._n_past = [], 0
            self._lora_on = self.config.lora is not None

    def __enter__(self) -> LlamaVisionModel:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- public API ---------------------------------------------------------------------------

    def run(
        self,
        messages: Sequence[Message],
        steps: Sequence[Step],
        *,
        seed: int = 0,
        on_text: OnText | None = None,
        role: str = "listener",
    ) -> ScriptResult:
        with self._lock:
            self._ensure_loaded()
            self._apply_lora(role)
            segments, release = self._tokenize(messages)
            try:
                self._prefill(segments)
                return self._run_steps(steps, seed, on_text)
            finally:
                release()

    def next_token_logits(self, messages: Sequence[Message], prefix: str = "") -> np.ndarray:
        """The raw next-token logits after the generation prompt and `prefix` (for checks and probes)."""
        return self.run_logits(messages, [Force(prefix)] if prefix else [])

    def run_logits(self, messages: Sequence[Message], steps: Sequence[Step], role: str = "listener") -> np.ndarray:
        with self._lock:
            self._ensure_loaded()
            self._apply_lora(role)
            segments, release = self._tokenize(messages)
            try:
                self._prefill(segments)
                self._run_steps(steps, 0, None)
                return self._logits()
            finally:
                release()

    def embed_image(self, image: ImageRef) -> np.ndarray:
        with self._lock:
            self._ensure_loaded()
            segments, release = self._tokenize([Message.of("user", image)], template=False)
            try:
                seg = next(s for s in segments if s.kind == "image")
                tokens = self._embedding(seg).reshape(seg.n_tokens, self._n_embd)
            finally:
                release()
        return pool_tokens(tokens)

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        """Token ids of `text`; `special=True` reads `<|im_start|>` and the like as the special tokens."""
        with self._lock:
            self._ensure_loaded()
            return self._llm.tokenize(text.encode(), add_bos=False, special=special)

    def render(self, messages: Sequence[Message]) -> str:
        """The prompt text the model sees, images shown as the media marker."""
        with self._lock:
            self._ensure_loaded()
            return self._render(messages)

    # ---- prompt -> chunks -------------------------------------------------------------------------

    def _render(self, messages: Sequence[Message]) -> str:
        llm = self._llm
        chat = []
        for m in messages:
            if all(isinstance(p, str) for p in m.parts):
                chat.append({"role": m.role, "content": "".join(m.parts)})
            else:
                chat.append(
                    {
                        "role": m.role,
                        "content": [
                            {"type": "text", "text": self._marker if isinstance(p, ImageRef) else p} for p in m.parts
                        ],
                    }
                )
        piece = lambda tok: llm.detokenize([tok], special=True).decode("utf-8", "ignore")  # noqa: E731
        return self._template.render(
            messages=chat,
            add_generation_prompt=True,
            bos_token=piece(llm.token_bos()),
            eos_token=piece(llm.token_eos()),
        )

    def _tokenize(self, messages: Sequence[Message], *, template: bool = True):
        import llama_cpp.mtmd_cpp as mtmd

        images: list[PreparedImage] = []
        for m in messages:
            for ref in m.images:
                try:
                    images.append(prepare(ref, max_side=self.config.max_side, max_pixels=self.config.max_pixels))
                except ImageError as exc:
                    raise ModelError(f"image cannot be used: {exc.reason}") from exc
        text = self._render(messages) if template else self._marker
        bitmaps = []
        for img in images:
            buf = (ctypes.c_uint8 * len(img.rgb)).from_buffer_copy(img.rgb)
            bm = mtmd.mtmd_bitmap_init(img.width, img.height, buf)
            if not bm:
                raise ModelError("libmtmd could not take the image")
            mtmd.mtmd_bitmap_set_id(bm, img.key.encode())
            bitmaps.append(bm)
        chunks = mtmd.mtmd_input_chunks_init()

        def release() -> None:
            mtmd.mtmd_input_chunks_free(chunks)
            for bm in bitmaps:
                mtmd.mtmd_bitmap_free(bm)

        try:
            inp = mtmd.mtmd_input_text()
            raw = text.encode()
            inp.text, inp.text_len, inp.add_special, inp.parse_special = raw, len(raw), template, True
            arr = (mtmd.mtmd_bitmap_p_ctypes * max(1, len(bitmaps)))(*bitmaps)
            rc = mtmd.mtmd_tokenize(self._mctx, chunks, ctypes.byref(inp), arr, len(bitmaps))
            if rc != 0:
                raise ModelError(f"prompt and images do not match (libmtmd tokenize error {rc})")
            segments = []
            for i in range(mtmd.mtmd_input_chunks_size(chunks)):
                chunk = mtmd.mtmd_input_chunks_get(chunks, i)
                if mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                    n = ctypes.c_size_t()
                    ptr = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                    segments.append(_Segment("text", tokens=[ptr[j] for j in range(n.value)]))
                else:
                    key = (mtmd.mtmd_input_chunk_get_id(chunk) or b"").decode()
                    segments.append(
                        _Segment("image", key=key, chunk=chunk, n_tokens=mtmd.mtmd_input_chunk_get_n_tokens(chunk))
                    )
        except BaseException:
            release()
            raise
        return segments, release

    # ---- evaluation ---------------------------------------------------------------------------

    def _apply_lora(self, role: str) -> None:
        """Switch the LoRA on or off for this call's role (only with `lora_scope="speaker"`)."""
        import ctypes

        import llama_cpp

        cfg = self.config
        if cfg.lora is None or cfg.lora_scope == "all":
            return
        want = role == "speaker"
        if want == self._lora_on:
            return
        adapter = self._llm._lora_adapter
        if want:
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter)
            failed = llama_cpp.llama_set_adapters_lora(self._llm.ctx, adapters, 1, (ctypes.c_float * 1)(1.0))
        else:
            failed = llama_cpp.llama_set_adapters_lora(self._llm.ctx, None, 0, None)
        if failed:
            raise ModelError(f"cannot switch the LoRA adapter {cfg.lora}")
        self._truncate(0)  # what the cache holds was computed with the other weights
        self._lora_on = want

    def _prefill(self, segments: list[_Segment]) -> None:
        """Bring the KV cache to exactly `segments`, evaluating only what differs from what it holds."""
        target: list[tuple] = []
        for seg in segments:
            if seg.kind == "text":
                target.extend(("t", tok) for tok in seg.tokens)
            else:
                target.append(("i", seg.key, seg))
        if not target or target[-1][0] != "t":
            raise ModelError("a prompt must end with text")
        keep = 0
        if self.cache:
            for have, want in zip(self._items, target, strict=False):
                if have[0] != want[0] or have[1] != want[1]:
                    break
                keep += 1
            keep = min(keep, len(target) - 1)  # the last token is always evaluated: we need its logits
        self._truncate(keep)
        self.stats.tokens_reused += sum(1 if it[0] == "t" else it[4] for it in self._items)
        pending: list[int] = []
        for item in target[keep:]:
            if item[0] == "t":
                pending.append(item[1])
                continue
            self._decode_tokens(pending, logits_last=False)
            pending = []
            self._decode_image(item[2])
        self._decode_tokens(pending, logits_last=True)

    def _truncate(self, keep: int) -> None:
        import llama_cpp

        mem = llama_cpp.llama_get_memory(self._llm.ctx)
        if keep == 0:
            llama_cpp.llama_memory_clear(mem, True)
            self._items, self._n_past = [], 0
            return
        if keep < len(self._items):
            pos0 = self._items[keep][2]
            if not llama_cpp.llama_memory_seq_rm(mem, 0, pos0, -1):
                llama_cpp.llama_memory_clear(mem, True)
                self._items, self._n_past = [], 0
                return
            self._items = self._items[:keep]
            self._n_past = pos0

    def _decode_tokens(self, tokens: list[int], *, logits_last: bool, logprobs: list[float] | None = None) -> None:
        """Evaluate `tokens` after what the cache holds. With `logprobs`, append each token's log-probability
        given what precedes it (the first one's from the logits the cache ends with) and keep every logit."""
        import llama_cpp

        if not tokens:
            return
        if logprobs is not None:
            logprobs.append(_logprob(self._logits(), tokens[0]))
        if self._n_past + len(tokens) > self.config.n_ctx:
            raise ModelError(f"prompt too long: {self._n_past + len(tokens)} tokens > context {self.config.n_ctx}")
        b = self._batch
        step = self.config.n_batch
        for start in range(0, len(tokens), step):
            part = tokens[start : start + step]
            b.n_tokens = len(part)
            for j, tok in enumerate(part):
                b.token[j] = tok
                b.pos[j] = self._n_past + j
                b.n_seq_id[j] = 1
                b.seq_id[j][0] = 0
                b.logits[j] = logprobs is not None or (logits_last and start + j == len(tokens) - 1)
            rc = llama_cpp.llama_decode(self._llm.ctx, b)
            if rc != 0:
                raise ModelError(f"llama_decode failed ({rc})")
            if logprobs is not None:  # logits at token j predict token j + 1
                for j in range(len(part) - 1 if start + len(part) == len(tokens) else len(part)):
                    logprobs.append(_logprob(self._logits(j), tokens[start + j + 1]))
            for j, tok in enumerate(part):
                self._items.append(("t", tok, self._n_past + j))
            self._n_past += len(part)
        self.stats.tokens_evaluated += len(tokens)

    def _decode_image(self, seg: _Segment) -> None:
        import llama_cpp
        import llama_cpp.mtmd_cpp as mtmd

        embd = self._embedding(seg)
        new_past = llama_cpp.llama_pos(0)
        rc = mtmd.mtmd_helper_decode_image_chunk(
            self._mctx,
            self._llm.ctx,
            seg.chunk,
            embd.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
            self._n_past,
            0,
            self.config.n_batch,
            ctypes.byref(new_past),
            mtmd.mtmd_helper_post_decode_callback(),  # NULL: no callback
            None,
        )
        if rc != 0:
            raise ModelError(f"decoding the image failed ({rc})")
        self._items.append(("i", seg.key, self._n_past, new_past.value - self._n_past, seg.n_tokens))
        self._n_past = new_past.value
        self.stats.tokens_evaluated += seg.n_tokens

    def _embedding(self, seg: _Segment) -> np.ndarray:
        import llama_cpp.mtmd_cpp as mtmd

        if self.cache and seg.key in self._embeds:
            self._embeds.move_to_end(seg.key)
            self.stats.image_cache_hits += 1
            return self._embeds[seg.key]
        if mtmd.mtmd_encode_chunk(self._mctx, seg.chunk) != 0:
            raise ModelError("the vision encoder failed on this image")
        self.stats.image_encodes += 1
        self.stats.image_tokens_encoded += seg.n_tokens
        n = seg.n_tokens * self._n_embd
        out = np.ctypeslib.as_array(mtmd.mtmd_get_output_embd(self._mctx), shape=(n,)).copy()
        if self.cache:
            self._embeds[seg.key] = out
            self._embed_bytes += out.nbytes
            while self._embed_bytes > self.config.embed_cache_mb * 2**20 and len(self._embeds) > 1:
                _, old = self._embeds.popitem(last=False)
                self._embed_bytes -= old.nbytes
        return out

    # ---- steps --------------------------------------------------------------------------------

    def _logits(self, i: int = -1) -> np.ndarray:
        """The logits of the last decoded batch's `i`-th token (that had its logits kept); -1: the last one."""
        import llama_cpp

        ptr = llama_cpp.llama_get_logits_ith(self._llm.ctx, i)
        return np.ctypeslib.as_array(ptr, shape=(self._n_vocab,)).copy()

    def _run_steps(self, steps: Sequence[Step], seed: int, on_text: OnText | None) -> ScriptResult:
        result = ScriptResult()
        for step in steps:
            start = len(self._items)
            if isinstance(step, Force):
                tokens = list(step.tokens) if step.tokens is not None else self._tokens(step.text)
                self._decode_tokens(tokens, logits_last=True)
                out: str | Choice | Scored = step.text
            elif isinstance(step, Choose):
                out = self._choose(step)
            elif isinstance(step, Score):
                tokens = self._tokens(step.text)
                logprobs: list[float] = []
                self._decode_tokens(tokens, logits_last=True, logprobs=logprobs)
                out = Scored(step.text, float(sum(logprobs)), len(tokens))
            elif isinstance(step, Generate):
                out, n, truncated = self._generate(step, seed, on_text)
                result.n_generated += n
                result.truncated |= truncated
            else:
                raise TypeError(f"unknown step {step!r}")
            result.outputs.append(out)
            result.text += out.picked if isinstance(out, Choice) else out.text if isinstance(out, Scored) else out
            result.step_tokens.append(tuple(item[1] for item in self._items[start:]))
        return result

    def _tokens(self, text: str) -> list[int]:
        return self._llm.tokenize(text.encode(), add_bos=False, special=False)

    def _choose(self, step: Choose) -> Choice:
        firsts = []
        for opt in step.options:
            toks = self._tokens(opt)
            if not toks:
                raise ModelError(f"option {opt!r} has no tokens")
            firsts.append(toks[0])
        probs, mass = option_probs(self._logits(), firsts)
        picked = step.options[int(np.argmax(probs))]
        self._decode_tokens(self._tokens(picked), logits_last=True)
        return Choice(picked=picked, probs={o: float(p) for o, p in zip(step.options, probs, strict=True)}, mass=mass)

    def _generate(self, step: Generate, seed: int, on_text: OnText | None) -> tuple[str, int, bool]:
        import llama_cpp

        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        try:
            if step.grammar:
                g = llama_cpp.llama_sampler_init_grammar(self._vocab, step.grammar.encode(), b"root")
                if not g:
                    raise ModelError("invalid grammar")
                llama_cpp.llama_sampler_chain_add(chain, g)
            if step.temperature <= 0:
                llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
            else:
                llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_k(40))
                llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_p(0.95, 1))
                llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_temp(step.temperature))
                llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_dist(seed & 0xFFFFFFFF))
            decoder = codecs.getincrementaldecoder("utf-8")("replace")
            out: list[str] = []
            n = 0
            truncated = True
            while n < step.max_tokens:
                tok = llama_cpp.llama_sampler_sample(chain, self._llm.ctx, -1)
                if llama_cpp.llama_vocab_is_eog(self._vocab, tok):
                    truncated = False
                    break
                n += 1
                piece = decoder.decode(self._llm.detokenize([tok], special=False))
                self._decode_tokens([tok], logits_last=True)
                if piece:
                    out.append(piece)
                    if on_text:
                        on_text(piece)
                if step.stop and any("".join(out).endswith(s) for s in step.stop):
                    truncated = False
                    break
            tail = decoder.decode(b"", final=True)
            if tail:
                out.append(tail)
            text = "".join(out)
            if truncated and step.close:
                # Out of budget inside a grammar: close it as the step says, so the output stays well-formed.
                self._decode_tokens(
                    self._llm.tokenize(step.close.encode(), add_bos=False, special=False), logits_last=True
                )
                text += step.close
            return text, n, truncated
        finally:
            llama_cpp.llama_sampler_free(chain)


def _logprob(logits: np.ndarray, token: int) -> float:
    """log softmax(logits)[token], in float64."""
    z = np.asarray(logits, dtype=np.float64)
    top = z.max()
    return float(z[token] - top - np.log(np.exp(z - top).sum()))


def _compile_template(source: str):
    """The GGUF's chat template, rendered as llama-cpp-python's MTMDChatHandler renders it."""
    import json
    from datetime import datetime

    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = lambda value, indent=None: json.dumps(value, indent=indent, ensure_ascii=False)
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)

    def raise_exception(message: str):
        raise ModelError(f"chat template: {message}")

    env.globals["raise_exception"] = raise_exception
    return env.from_string(source)
