from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from transformers import CLIPTokenizer

from generation.embedded.scenes import caption_scene, caption_vocabulary, sample_scene
from generation.embedded.tokenizer import save_tokenizer


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    texts = [caption_scene(sample_scene(rng), rng) for _ in range(2000)] + caption_vocabulary()
    folder = tmp_path_factory.mktemp("tok")
    save_tokenizer(folder, texts, model_max_length=32)
    return folder


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir: Path) -> CLIPTokenizer:
    return CLIPTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)


def test_every_caption_word_is_one_token(tokenizer: CLIPTokenizer) -> None:
    rng = np.random.default_rng(5)
    for _ in range(200):
        caption = caption_scene(sample_scene(rng), rng)
        ids = tokenizer(caption).input_ids
        words = caption.replace(",", " ,").split()
        assert len(ids) == len(words) + 2, caption  # plus start and end tokens
    for word in caption_vocabulary():
        assert len(tokenizer(word).input_ids) == 3, word


def test_unknown_words_split_into_known_tokens(tokenizer: CLIPTokenizer) -> None:
    for text in ["a zebra-striped squircle", "ünïcode 日本 😀", "QWERTY!!", ""]:
        ids = tokenizer(text).input_ids
        assert ids[0] == tokenizer.bos_token_id
        assert ids[-1] == tokenizer.eos_token_id
        assert tokenizer.unk_token_id not in ids[1:-1]  # never the unknown token: byte symbols
    assert len(tokenizer("zebra").input_ids) > 3


def test_folder_keeps_clip_vocab_and_merges(tokenizer_dir: Path) -> None:
    vocab = json.loads((tokenizer_dir / "vocab.json").read_text(encoding="utf-8"))
    merges = (tokenizer_dir / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert merges[0].startswith("#version")
    assert len(merges) > 50
    byte_symbols = [s for s in vocab if len(s) == 1]
    assert len(byte_symbols) == 256
    assert sum(s.endswith("</w>") and len(s) == 5 for s in vocab) == 256
    assert "circle</w>" in vocab
    assert "<|startoftext|>" in vocab
    assert "<|endoftext|>" in vocab


def test_padding_matches_the_pipeline(tokenizer: CLIPTokenizer) -> None:
    ids = tokenizer("", padding="max_length", max_length=tokenizer.model_max_length).input_ids
    assert len(ids) == 32
    assert ids[:2] == [tokenizer.bos_token_id, tokenizer.eos_token_id]
