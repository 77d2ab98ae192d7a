"""Tokenizers that turn item text fields into fixed-width token-id arrays.

`word`: a vocabulary built on the training split (0 = <pad>, 1 = <unk>), the classic news-recommendation input.
Anything else: a Hugging Face tokenizer from a local folder or a packaged model (see `oncerec.lm.packaged`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

PAD, UNK = 0, 1
_WORD = re.compile(r"[\w']+|[^\w\s]")


def words(text: str, lowercase: bool = True) -> list[str]:
    return _WORD.findall(text.lower() if lowercase else text)


def word_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) character offsets of the tokens `words` gives (found in the text as written, so that they
    match offsets into it, e.g. MIND's entity occurrences)."""
    return [m.span() for m in _WORD.finditer(text)]


class WordTokenizer:
    name = "word"

    def __init__(self, vocab: list[str], lowercase: bool = True):
        self.vocab = vocab
        self.lowercase = lowercase
        self.index = {w: i for i, w in enumerate(vocab)}

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 1, lowercase: bool = True) -> WordTokenizer:
        counts = Counter(w for t in texts for w in words(t, lowercase))
        # Sorted by count then word, so the same data always gives the same ids.
        kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        return cls(["<pad>", "<unk>", *kept], lowercase)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        get = self.index.get
        return [[get(w, UNK) for w in words(t, self.lowercase)] for t in texts]


class HFTokenizer:
    """Wraps a local Hugging Face tokenizer; special tokens (e.g. [CLS] ... [SEP]) are kept."""

    def __init__(self, name: str):
        from transformers import AutoTokenizer

        from oncerec.lm.packaged import resolve_model_path

        self.name = name
        self.tok = AutoTokenizer.from_pretrained(str(resolve_model_path(name)), local_files_only=True)
        self.vocab_size = len(self.tok)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        return self.tok(list(texts), add_special_tokens=True)["input_ids"]


def make_tokenizer(name: str, train_texts: Iterable[str], min_count: int, lowercase: bool):
    if name == "word":
        return WordTokenizer.build(train_texts, min_count, lowercase)
    return HFTokenizer(name)


def pack(token_lists: list[list[int]], max_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Right-padded `[N, max_len]` int32 ids keeping each text's start, kept lengths, and full lengths."""
    full = np.fromiter((len(t) for t in token_lists), dtype=np.int32, count=len(token_lists))
    ids = np.zeros((len(token_lists), max_len), dtype=np.int32)
    for i, t in enumerate(token_lists):
        t = t[:max_len]
        ids[i, : len(t)] = t
    return ids, np.minimum(full, max_len), full


def tokenize_field(
    tok: WordTokenizer | HFTokenizer, texts: Sequence[str], max_len: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A text field of items as a dataset stores it (`pack`): `prepare` tokenizes every item's field through
    here, and a service the items added to it, so that an item added later reads as one prepared."""
    return pack(tok.encode(texts), max_len)
