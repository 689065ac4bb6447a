"""A small Qwen2-style tokenizer trained here: byte-level BPE, Qwen2's pre-tokenizer, Qwen2-VL's special tokens.

Called by `trainer.tiny.build_tiny`. `train_tokenizer(n)` is deterministic: it trains the `tokenizers` BPE
on the built-in `CORPUS` (English photo words plus the JSON/prompt vocabulary the runtime's prompts and
grammars use), then wraps the result in transformers' `Qwen2Tokenizer`, whose pipeline (NFC, Qwen2's split
regex, byte-level) is the one llama.cpp implements as the `qwen2` pre-tokenizer. Special tokens follow the
real Qwen2-VL order after the BPE vocabulary, and `QWEN2_VL_CHAT_TEMPLATE` is Qwen2-VL-Instruct's template.
"""

from __future__ import annotations

# Qwen2-VL's added tokens, in the real model's order (151643..151656 there; appended after the BPE here).
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Qwen2-VL-Instruct's chat template: a content list renders image / image_url parts as
# <|vision_start|><|image_pad|><|vision_end|> (one pad; the processor expands it) and text parts verbatim.
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_WORDS = """
a an the this that these those is are was were be it its of in on at with without and or but not no yes
I you he she we they my your his her our their me him us them who what where when which why how
photo photos picture image images camera person people man woman child baby boy girl friend family
dog dogs cat cats bird horse cow sheep fish animal pet puppy kitten grandma grandpa mother father
mug cup bottle glass bowl plate chair table sofa bed lamp door window car bike bicycle boat train bus
tree trees flower flowers grass garden park beach sea ocean lake river mountain sky cloud sun snow rain
house room kitchen street city road field forest sand water wall floor toy ball book bag hat shoe
red orange yellow green blue purple pink brown black white gray grey gold silver dark light bright
small large big little tall short long round square striped spotted plain fluffy shiny soft old new
left right top bottom front back center middle side near far inside outside under over next behind
sitting standing running walking lying playing eating holding looking smiling sleeping jumping
one two three four five six seven eight nine ten first second third many few some all every each
Yes No Answer Reasoning Caption Description Question Concept Category Candidate Image Photo The A B C D
answer reasoning caption description question concept category candidate name label score probability
coarse detailed speaker listener match matches identify recognition identification visible
distinguishing attribute attributes color colour pattern shape texture size feature features ear ears
eye eyes nose tail fur hair face hand handle lid logo stripe stripes spot spots collar
describe answer respond only JSON object with keys true false null user assistant system
Here here personal called named this image shows looks
"""

_TEMPLATES = (
    '{{"answer": "{yes}", "reasoning": "The {obj} in the photo is {color} and {adj}."}}',
    '{{"answer": "{abc}", "reasoning": "Candidate {abc} shows a {adj} {color} {obj}."}}',
    '{{"caption": "A photo of {name} with a {color} {obj}."}}',
    '{{"Reasoning": "The {color} {obj} looks {adj}.", "Answer": "{yes}"}}',
    '{{"Reasoning": "Image {abc} shows the {adj} {obj}.", "Answer": "{abc}", "Caption": "{name} with a {obj}."}}',
    "Here is a personal {obj} called <{name}>. Is <{name}> in this image?",
    "<coarse>A photo of a {adj} {obj}</coarse> <detailed>The {obj} has {color} fur and a {adj} tail.</detailed>",
    "Is {name} in this photo? Answer Yes or No. Respond only with JSON.",
    "Which image shows {name}: A, B or C? Give your reasoning and answer.",
    "Description: the {color} {obj} is {adj}. Question: is it {name}? Answer: {yes}",
)
_FILL = {
    "yes": ("Yes", "No"),
    "abc": ("A", "B", "C"),
    "obj": ("dog", "cat", "mug", "chair", "bike", "tree", "ball", "hat"),
    "color": ("red", "blue", "green", "brown", "black", "white", "yellow"),
    "adj": ("small", "large", "fluffy", "striped", "round", "shiny", "old"),
    "name": ("Bo", "Max", "Luna", "grandma", "my blue mug", "Rex"),
}


def corpus() -> list[str]:
    """The training text: every word a few times, plus prompt and JSON lines with rotating fillers."""
    lines = [" ".join(_WORDS.split())] * 3
    lines += [word for word in _WORDS.split()]
    for i in range(210):
        template = _TEMPLATES[i % len(_TEMPLATES)]
        fill = {key: values[(i * (k + 3)) % len(values)] for k, (key, values) in enumerate(_FILL.items())}
        lines.append(template.format(**fill))
    lines.append("0 1 2 3 4 5 6 7 8 9 10 0.5 0.25 1.0 ,.:;!?'\"()[]{}<>/-_+=*&%$#@ \n\t")
    return lines


def train_tokenizer(bpe_vocab: int = 640, extra: tuple[str, ...] = ()):
    """Train the BPE on `corpus()` plus `extra` lines; a transformers `Qwen2Tokenizer` with Qwen2-VL's specials."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import AddedToken, Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=bpe_vocab,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    bpe.train_from_iterator(corpus() + list(extra), trainer=trainer)
    model = bpe.get_vocab(with_added_tokens=False)
    tokenizer = Qwen2Tokenizer(
        vocab=dict(sorted(model.items(), key=lambda kv: kv[1])),
        merges=_merges(bpe),
        unk_token=None,
        bos_token=None,
        eos_token=None,
        pad_token=None,
        errors="replace",
        model_max_length=4096,
        add_bos_token=False,
    )
    # Add the specials before naming eos/pad, so their ids follow Qwen2-VL's order rather than role order.
    tokenizer.add_tokens([AddedToken(tok, special=True, normalized=False) for tok in SPECIAL_TOKENS])
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.pad_token = "<|endoftext|>"
    return tokenizer


def _merges(bpe) -> list[tuple[str, str]]:
    import json

    raw = json.loads(bpe.to_str())["model"]["merges"]
    return [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in raw]
