"""An offline CLIP tokenizer for the embedded model, trained as a real BPE on the captions.

The vocabulary is laid out like CLIP's own: the 256 byte symbols, the same 256 with the
end-of-word suffix `</w>`, the merged symbols in merge order, then the two special tokens. Every
caption word becomes one token; any other word still splits into known byte symbols, so nothing
the user types can crash the tokenizer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers, trainers
from tokenizers.models import BPE
from transformers import CLIPTokenizer

log = logging.getLogger(__name__)

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
END_OF_WORD = "</w>"
# CLIP's own pre-tokenisation pattern (the one transformers' CLIPTokenizer uses).
_CLIP_SPLIT = (
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|"""
    r"""[^\s\p{L}\p{N}]+"""
)


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins for bytes used by byte-level BPE (GPT-2 / CLIP order)."""
    codes = list(range(ord("!"), ord("~") + 1))
    codes += list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = codes[:]
    extra = 0
    for b in range(256):
        if b not in codes:
            codes.append(b)
            chars.append(256 + extra)
            extra += 1
    by_byte = dict(zip(codes, chars, strict=True))
    return [chr(by_byte[b]) for b in range(256)]


def _training_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer(BPE(end_of_word_suffix=END_OF_WORD, unk_token=EOS_TOKEN))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_CLIP_SPLIT), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    return tokenizer


def train_vocabulary(texts: Iterable[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Train a BPE on `texts`; return CLIP-layout vocab and the merges in order."""
    # 1. Train until every word of the texts is one symbol (a generous vocab size does that).
    tokenizer = _training_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=4096,
        min_frequency=1,
        show_progress=False,
        special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        end_of_word_suffix=END_OF_WORD,
    )
    tokenizer.train_from_iterator(list(texts), trainer=trainer)
    model = json.loads(tokenizer.to_str())["model"]
    merges: list[tuple[str, str]] = [
        (m[0], m[1]) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in model["merges"]
    ]
    # 2. Lay the vocab out like CLIP: bytes, bytes + </w>, merge results, specials.
    symbols = _byte_symbols()
    ordered = symbols + [s + END_OF_WORD for s in symbols]
    for left, right in merges:
        ordered.append(left + right)
    vocab: dict[str, int] = {}
    for symbol in [*ordered, BOS_TOKEN, EOS_TOKEN]:
        vocab.setdefault(symbol, len(vocab))
    # 3. A merge may only use symbols that exist: drop any that the layout cannot reach.
    usable = [(a, b) for a, b in merges if a in vocab and b in vocab]
    if len(usable) != len(merges):
        log.warning("tokenizer ◆ dropped %d unusable merges", len(merges) - len(usable))
    return vocab, usable


def save_tokenizer(folder: Path, texts: Iterable[str], model_max_length: int) -> CLIPTokenizer:
    """Train the BPE on `texts` and write vocab.json, merges.txt and the tokenizer config."""
    vocab, merges = train_vocabulary(texts)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merge_lines = ["#version: 0.2", *(f"{a} {b}" for a, b in merges)]
    (folder / "merges.txt").write_text("\n".join(merge_lines) + "\n", encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": model_max_length,
        "bos_token": BOS_TOKEN,
        "eos_token": EOS_TOKEN,
        "unk_token": EOS_TOKEN,
        "pad_token": EOS_TOKEN,
        "do_lower_case": True,
        "clean_up_tokenization_spaces": False,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    special = {
        "bos_token": BOS_TOKEN,
        "eos_token": EOS_TOKEN,
        "unk_token": EOS_TOKEN,
        "pad_token": EOS_TOKEN,
    }
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2), encoding="utf-8")
    log.info("tokenizer ◆ %d symbols ◆ %d merges ◆ %s", len(vocab), len(merges), folder)
    return load_tokenizer(folder)


def load_tokenizer(folder: Path) -> CLIPTokenizer:
    """Load the tokenizer folder written by `save_tokenizer` (no network)."""
    return CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
