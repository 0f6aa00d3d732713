"""Text to the UNet's conditioning, our way (imported by the worker only: torch): A1111 weights
applied to the token embeddings, prompts longer than the text encoder's window encoded in
chunks and concatenated instead of cut, SDXL's two encoders and pooled embeds.

A plain prompt that fits one window gives exactly diffusers' own ``encode_prompt`` tensors, so
its pixels are the pipeline's.

How a prompt becomes embeddings:

1. :func:`generation.prompt_syntax.parse_weights` splits it into weighted segments; each
   segment's text goes through ``pipe.maybe_convert_prompt`` (multi-vector textual-inversion
   tokens expand as diffusers expands them) and the tokenizer, without special tokens.
2. The tokens fill windows of ``model_max_length - 2`` (75 for SD, 30 for the embedded model),
   each wrapped in BOS/EOS and padded to ``model_max_length`` as the tokenizer pads; ``BREAK``
   starts a new window. Beyond ``MAX_CHUNKS`` windows the rest is cut and counted.
3. Every prompt and negative of the batch is padded to the same number of windows with empty
   windows (the tokens of ``""``), then each window is encoded on its own, as diffusers encodes
   one prompt: SD 1/2 the encoder's last hidden state, SDXL both encoders' penultimate hidden
   states side by side and the pooled embeds of ``text_encoder_2`` for the first window.
4. A window holding weights other than 1 is weighted A1111's way: each token's embedding is
   multiplied by its weight, then the whole window is rescaled so its mean is what it was. The
   mean is taken per prompt and window (A1111 takes it over its whole batch; here a job's
   conditioning does not depend on the jobs it is batched with).
5. The windows are concatenated along the sequence axis.

A prompt's pixels still depend on the number of windows it is padded to: the worker batches
together only requests with the same :func:`window_count`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from generation.prompt_syntax import Segment, parse_weights

MAX_CHUNKS = 8  # windows per prompt (8 × 75 tokens for SD): beyond it the prompt is cut


@dataclass
class Conditioning:
    prompt_embeds: Any  # torch.Tensor [batch, 77·chunks, dim]
    negative_prompt_embeds: Any
    pooled_prompt_embeds: Any = None  # SDXL only
    negative_pooled_prompt_embeds: Any = None
    cut: tuple[int, ...] = ()  # per prompt: tokens dropped beyond MAX_CHUNKS (0: none)
    negative_cut: tuple[int, ...] = ()  # the same for each negative prompt

    def pipeline_kwargs(self) -> dict[str, Any]:
        """What the diffusers pipeline call takes instead of prompt/negative_prompt."""
        kwargs = {
            "prompt_embeds": self.prompt_embeds,
            "negative_prompt_embeds": self.negative_prompt_embeds,
        }
        if self.pooled_prompt_embeds is not None:
            kwargs["pooled_prompt_embeds"] = self.pooled_prompt_embeds
            kwargs["negative_pooled_prompt_embeds"] = self.negative_pooled_prompt_embeds
        return kwargs


@dataclass(frozen=True)
class _Encoder:
    tokenizer: Any
    text_encoder: Any
    penultimate: bool  # SDXL: the hidden states before the last layer
    pooled: bool  # SDXL's text_encoder_2: its projected pooled output goes to the UNet too


@dataclass
class _Window:
    ids: list[int]
    weights: list[float]
    mask: list[int]


@dataclass
class _Tokens:
    """One prompt's windows for one tokenizer, before padding to the batch's window count."""

    windows: list[_Window] = field(default_factory=list)
    cut: int = 0


def _encoders(pipe: Any) -> list[_Encoder]:
    if getattr(pipe, "text_encoder_2", None) is None:
        return [_Encoder(pipe.tokenizer, pipe.text_encoder, penultimate=False, pooled=False)]
    encoders = []
    if getattr(pipe, "text_encoder", None) is not None:
        encoders.append(_Encoder(pipe.tokenizer, pipe.text_encoder, penultimate=True, pooled=False))
    encoders.append(_Encoder(pipe.tokenizer_2, pipe.text_encoder_2, penultimate=True, pooled=True))
    return encoders


def _runs(pipe: Any, tokenizer: Any, segments: list[Segment]) -> list[list[tuple[int, float]]]:
    """(token, weight) runs, one per stretch between BREAKs."""
    texts = [s.text for s in segments if not s.is_break and s.text]
    if texts and hasattr(pipe, "maybe_convert_prompt"):
        texts = [pipe.maybe_convert_prompt(text, tokenizer) for text in texts]
    ids = iter(tokenizer(texts, add_special_tokens=False, verbose=False).input_ids if texts else [])
    runs: list[list[tuple[int, float]]] = [[]]
    for segment in segments:
        if segment.is_break:
            runs.append([])
        elif segment.text:
            runs[-1].extend((token, segment.weight) for token in next(ids))
    return [run for run in runs if run] or [[]]


def _window(tokenizer: Any, tokens: Sequence[tuple[int, float]]) -> _Window:
    """BOS, the tokens, EOS, then padding to model_max_length: what the tokenizer writes with
    ``padding="max_length"``."""
    length = tokenizer.model_max_length
    pad = length - len(tokens) - 2
    return _Window(
        ids=[tokenizer.bos_token_id, *(t for t, _ in tokens), tokenizer.eos_token_id]
        + [tokenizer.pad_token_id] * pad,
        weights=[1.0, *(w for _, w in tokens), 1.0] + [1.0] * pad,
        mask=[1] * (len(tokens) + 2) + [0] * pad,
    )


def _tokens(pipe: Any, tokenizer: Any, segments: list[Segment]) -> _Tokens:
    size = tokenizer.model_max_length - 2
    result = _Tokens()
    for run in _runs(pipe, tokenizer, segments):
        for start in range(0, max(len(run), 1), size):
            if len(result.windows) == MAX_CHUNKS:
                result.cut += len(run) - start
                break
            result.windows.append(_window(tokenizer, run[start : start + size]))
    return result


def window_count(pipe: Any, prompt: str, negative: str = "") -> int:
    """The windows a prompt and its negative are encoded in (1 to MAX_CHUNKS): requests
    batched together are padded to the same count, which changes the pixels of the shorter."""
    return max(
        len(_tokens(pipe, encoder.tokenizer, parse_weights(text)).windows)
        for encoder in _encoders(pipe)
        for text in (prompt, negative)
    )


def _weighted(hidden: torch.Tensor, weights: list[float]) -> torch.Tensor:
    """A1111's emphasis: each token's embedding times its weight, then the window rescaled so
    its mean is the mean it had."""
    if all(weight == 1.0 for weight in weights):
        return hidden
    original = hidden.float()
    scaled = original * torch.tensor(weights, device=hidden.device)[:, None]
    mean = scaled.mean()
    if mean != 0:
        scaled = scaled * (original.mean() / mean)
    return scaled.to(hidden.dtype)


def _encode_windows(
    device: torch.device, encoder: _Encoder, rows: list[list[_Window]]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Hidden states [rows, windows·length, dim] and, for a pooled encoder, the first window's
    pooled embeds [rows, dim]."""
    count = len(rows[0])
    flat = [window for row in rows for window in row]
    ids = torch.tensor([w.ids for w in flat], dtype=torch.long, device=device)
    mask = None
    if getattr(encoder.text_encoder.config, "use_attention_mask", False):
        mask = torch.tensor([w.mask for w in flat], dtype=torch.long, device=device)
    if encoder.penultimate:
        output = encoder.text_encoder(ids, attention_mask=mask, output_hidden_states=True)
        hidden = output.hidden_states[-2]
    else:
        output = encoder.text_encoder(ids, attention_mask=mask)
        hidden = output[0]
    hidden = torch.stack([_weighted(h, w.weights) for h, w in zip(hidden, flat, strict=True)])
    hidden = hidden.reshape(len(rows), count * hidden.shape[1], hidden.shape[2])
    pooled = None
    if encoder.pooled:
        pooled = output[0].reshape(len(rows), count, -1)[:, 0]
    return hidden, pooled


def _padded(tokens: _Tokens, tokenizer: Any, count: int) -> list[_Window]:
    return tokens.windows + [_window(tokenizer, [])] * (count - len(tokens.windows))


def encode(pipe: Any, prompts: Sequence[str], negatives: Sequence[str]) -> Conditioning:
    """Encodes a batch's prompts and negatives (same length) with the pipeline's tokenizer(s)
    and text encoder(s); textual-inversion tokens loaded into the pipeline are expanded as
    diffusers does (``maybe_convert_prompt``)."""
    if len(prompts) != len(negatives) or not prompts:
        raise ValueError(f"{len(prompts)} prompts and {len(negatives)} negatives: need as many")
    encoders = _encoders(pipe)
    sdxl = encoders[-1].pooled
    zeroed = [
        sdxl and bool(getattr(pipe.config, "force_zeros_for_empty_prompt", False)) and not n.strip()
        for n in negatives
    ]
    # 1. Tokens in windows, per encoder, prompt and negative.
    parsed = [parse_weights(p) for p in prompts]
    parsed_negatives = [parse_weights(n) for n in negatives]
    tokens = [[_tokens(pipe, e.tokenizer, segments) for segments in parsed] for e in encoders]
    negative_tokens = [
        [_tokens(pipe, e.tokenizer, segments) for segments in parsed_negatives] for e in encoders
    ]
    count = max(len(t.windows) for per_encoder in tokens + negative_tokens for t in per_encoder)

    # 2. Each encoder's windows, padded to one count, encoded and weighted. The device is
    # asked once: diffusers finds it by walking every module (a LoRA's too), ~5 ms a time.
    device = pipe._execution_device
    hidden, negative_hidden = [], []
    pooled = negative_pooled = None
    with torch.no_grad():
        for encoder, own, negative in zip(encoders, tokens, negative_tokens, strict=True):
            rows = [_padded(t, encoder.tokenizer, count) for t in own]
            states, pool = _encode_windows(device, encoder, rows)
            rows = [_padded(t, encoder.tokenizer, count) for t in negative]
            negative_states, negative_pool = _encode_windows(device, encoder, rows)
            hidden.append(states)
            negative_hidden.append(negative_states)
            if encoder.pooled:
                pooled, negative_pooled = pool, negative_pool

    # 3. SDXL's encoders side by side; empty SDXL negatives zeroed as diffusers zeroes them.
    dtype = encoders[-1].text_encoder.dtype
    prompt_embeds = torch.cat(hidden, dim=-1).to(dtype=dtype, device=device)
    negative_embeds = torch.cat(negative_hidden, dim=-1).to(dtype=dtype, device=device)
    if pooled is not None and negative_pooled is not None:
        pooled = pooled.to(dtype=dtype, device=device)
        negative_pooled = negative_pooled.to(dtype=dtype, device=device)
        if any(zeroed):
            zero = torch.tensor(zeroed, device=device)
            negative_embeds = torch.where(zero[:, None, None], 0, negative_embeds)
            negative_pooled = torch.where(zero[:, None], 0, negative_pooled)
    return Conditioning(
        prompt_embeds=prompt_embeds,
        negative_prompt_embeds=negative_embeds,
        pooled_prompt_embeds=pooled,
        negative_pooled_prompt_embeds=negative_pooled if pooled is not None else None,
        cut=tuple(max(per_encoder[i].cut for per_encoder in tokens) for i in range(len(prompts))),
        negative_cut=tuple(
            max(per_encoder[i].cut for per_encoder in negative_tokens) for i in range(len(prompts))
        ),
    )
