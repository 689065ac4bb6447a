"""The multimodal runtime: the one place that talks to a vision-language model.

`protocol` defines the seam (`VisionModel`) and its value types; `prompts` and `answers` are pure (the
paper's prompts, the forced-JSON answer scripts and their parsing); `images` prepares photos for the
model; `llama` is the in-process llama.cpp implementation and the only importer of `llama_cpp`;
`tasks` turns a `VisionModel` into describe / recognize / identify / ask; `registry` names models.
"""
