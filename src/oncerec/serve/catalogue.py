"""The items a service knows: ids and their indices, the users of the training data, and new items' content made
into what the model reads, as `prepare` makes it (the same tokenizer, `tokenize_field` and prompt template; a
category training never saw is 0, the unknown one) and encoded by the model's item encoder."""

from __future__ import annotations

import re
from functools import cached_property

import numpy as np
import torch

from oncerec.config.schema import CATEGORICAL
from oncerec.data.batching import ItemContent
from oncerec.data.formats.registry import PROMPT_FIELDS
from oncerec.data.prepare import prompt_text
from oncerec.data.tokenize import HFTokenizer, WordTokenizer, tokenize_field
from oncerec.errors import OncerecError
from oncerec.inference import encode_items
from oncerec.serve.export import Export

_WORD = re.compile(r"\w")  # a letter or a digit: a text with one holds a word


class ItemError(OncerecError):
    """An item of a request that cannot be added: the field at fault (`items[3].id`) and what is wrong."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


class Catalogue:
    """Item ids <-> indices (row 0 is the padding item, never an item) and user ids -> indices (0: unknown)."""

    def __init__(self, export: Export):
        self.export = export
        self.model = export.model
        self.ids: list[str] = list(export.data.ids)
        self.index_of = {x: i for i, x in enumerate(self.ids) if i}
        self.users = {u: i for i, u in enumerate(export.data.vocab("user")) if i}

    def __len__(self) -> int:
        """Items known, the padding item included: the next new item's index."""
        return len(self.ids)

    def check_adding(self) -> None:
        """Reads now what adding items reads (the tokenizer, the category vocabularies): refused at start if
        missing, not at each request."""
        _ = self._tokenizer, self._categories

    # ---------------------------------------------------------------------------------- new items' content

    def validate(self, raw: list) -> list[dict[str, str]]:
        """The request's items, each an object of string content fields with an id (once in the request), and
        something the model reads."""
        if not isinstance(raw, list) or not raw:
            raise ItemError("items", "give a non-empty list of items")
        allowed = {"id", *self.export.data.text_fields, *CATEGORICAL, *PROMPT_FIELDS}
        read = list(self.export.cfg.model.item_fields)
        if "prompt" in read:  # filled from the template's fields when not given
            read += [f for f in PROMPT_FIELDS if f not in read]
        seen: set[str] = set()
        items = []
        for n, item in enumerate(raw):
            where = f"items[{n}]"
            if not isinstance(item, dict):
                raise ItemError(where, "an item is an object of content fields")
            for key, value in item.items():
                if key not in allowed:
                    raise ItemError(
                        f"{where}.{key}", f"not an item field; fields: {', '.join(sorted(allowed))}"
                    )
                if not isinstance(value, str):
                    raise ItemError(f"{where}.{key}", "give a string")
            if not item.get("id", "").strip():
                raise ItemError(f"{where}.id", "every item needs a non-empty id")
            if item["id"] in seen:
                raise ItemError(f"{where}.id", f"{item['id']!r} appears twice in this request")
            if not self._reads_content(item, read):
                raise ItemError(
                    where,
                    f"nothing the model reads in {', '.join(read)}: give a text with words (spaces and "
                    "punctuation alone are no content) or a category the model trained on",
                )
            seen.add(item["id"])
            items.append(dict(item))
        return items

    def _reads_content(self, item: dict[str, str], read: list[str]) -> bool:
        """Whether the item holds a token the model reads: a word in a text field (one outside the vocabulary
        is read as its unknown word, which trained), or a category it trained on. A text of spaces or
        punctuation alone carries nothing the model can rank by, and a CTR head ranked such an item near the
        top for every user."""
        for field in read:
            if field in CATEGORICAL:
                if self._categories[field].get(item.get(field, ""), 0):
                    return True
            elif _WORD.search(item.get(field, "")):
                return True
        return False

    @cached_property
    def _tokenizer(self) -> WordTokenizer | HFTokenizer:
        cfg = self.export.cfg
        if cfg.embed.tokenizer == "word":
            return WordTokenizer(self.export.data.vocab("word"), cfg.data.lowercase)
        return HFTokenizer(str(self.export.root / "tokenizer"))

    @cached_property
    def _categories(self) -> dict[str, dict[str, int]]:
        return {f: {c: i for i, c in enumerate(self.export.data.vocab(f))} for f in CATEGORICAL}

    def content(self, items: list[dict[str, str]]) -> dict[str, torch.Tensor]:
        """The items' content as the model's tensors: token ids cut to the prepared widths (the start kept),
        categories by their training vocabulary."""
        out = {}
        for key, table in self.model.content.tensors.items():
            if key in CATEGORICAL:
                codes = [self._categories[key].get(item.get(key, ""), 0) for item in items]
                out[key] = torch.tensor(codes, dtype=table.dtype)
            elif not key.endswith(("_len", "_entities")):  # added items name no entities (DKN)
                texts = [self._text(item, key) for item in items]
                ids, kept, _ = tokenize_field(self._tokenizer, texts, table.shape[1])
                out[key] = torch.from_numpy(ids).to(table.dtype)
                out[f"{key}_len"] = torch.from_numpy(kept).to(table.dtype)
        return out

    def _text(self, item: dict[str, str], field: str) -> str:
        if field == "prompt" and "prompt" not in item:  # as `prepare` fills it from the data's template
            return prompt_text(self.export.cfg.data.prompt, {k: item.get(k, "") for k in PROMPT_FIELDS})
        return item.get(field, "")

    def encode(self, content: dict[str, torch.Tensor]) -> np.ndarray:
        """The item encoder's vectors of new items' content, stored as the export stores its vectors (float16
        rounds), so that a restart serves the same values."""
        batch = self.export.cfg.exp.eval_batch_size
        encoded = encode_items(
            self.model, batch, "cpu", content=ItemContent.of(self.model.content.fields, content)
        )
        return encoded.numpy().astype(self.export.manifest["dtype"]).astype(np.float32)

    def put(self, items: list[dict[str, str]], content: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """Gives the items their indices (a known id keeps its own) and the model their content: (the items'
        indices, how many are new)."""
        rows, added = [], 0
        for item in items:
            i = self.index_of.get(item["id"])
            if i is None:
                i = self.index_of[item["id"]] = len(self.ids)
                self.ids.append(item["id"])
                added += 1
            rows.append(i)
        index = torch.tensor(rows, dtype=torch.long)
        self.model.content.put(index, content)
        return index, added
