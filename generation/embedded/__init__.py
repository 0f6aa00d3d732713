"""The embedded default model: a tiny latent diffusion model of coloured shapes.

It ships in `model/` in the diffusers Stable Diffusion folder layout, so the same
`StableDiffusionPipeline.from_pretrained(folder)` that loads real checkpoints loads it, offline.
`model/sdbot.json` holds the inference defaults measured for it.

- `scenes`: the world it draws (shapes, palette, positions) and its captions.
- `tokenizer`: the offline CLIP BPE tokenizer trained on the captions.
- `components`, `dataset`, `train`: the training recipe
  (`python -m generation.embedded.train --out DIR`).
- `analyser`, `prompts`, `adherence`: the prompt-adherence benchmark
  (`python -m generation.embedded.adherence`).

Nothing here is imported by `generation` itself: torch and diffusers load only when used.
"""
