"""The demo's title entities: one synthetic entity per concept, in MIND's formats.

news.tsv's TitleEntities names each concept a title mentions (its {c} and {c2} slots, see text.py) with
MIND's fields (WikidataId, OccurrenceOffsets, SurfaceForms, ...); each split's entity_embedding.vec holds the
vectors of the entities its titles name (MIND's format: the id, then 100 numbers, tab-separated, a trailing
tab). A concept's vector is the sum of its category's direction, its subcategory's and its own, of shrinking
size, so that the concepts of one subcategory lie closest and those of one category next, as related
entities do in TransE vectors. Every synonym of a concept, fresh words included, names the same entity.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from oncerec.data.demo.vocabulary import CONCEPT_SYNONYMS, SUB_CAT, SUB_N_CONCEPTS
from oncerec.data.formats.mind import ENTITY_FILE

__all__ = ["ENTITY_FILE", "entity_id", "entity_vectors", "title_entities", "write_entity_vectors"]

ENTITY_DIM = 100
SCALES = (1.0, 0.6, 0.35)  # spread of the category, subcategory and concept parts of a vector


def entity_id(concept: int) -> str:
    return f"Qdemo{concept}"  # Wikidata-like, and plainly not a real Wikidata id


def title_entities(title: str, mentions: list[tuple[int, int, int]]) -> str:
    """MIND's TitleEntities JSON for (concept, start, end) mentions of a title."""
    found: dict[int, list[int]] = {}
    for concept, start, _ in mentions:
        found.setdefault(concept, []).append(start)
    ends = {start: end for _, start, end in mentions}
    return json.dumps(
        [
            {
                "Label": CONCEPT_SYNONYMS[c][0],
                "Type": "C",
                "WikidataId": entity_id(c),
                "Confidence": 1.0,
                "OccurrenceOffsets": starts,
                "SurfaceForms": [title[s : ends[s]] for s in starts],
            }
            for c, starts in found.items()
        ],
        ensure_ascii=False,
    )


def entity_vectors(rng: np.random.Generator) -> np.ndarray:
    """[concepts, ENTITY_DIM] float vectors, unit length on average."""
    concept_sub = np.repeat(np.arange(len(SUB_N_CONCEPTS)), SUB_N_CONCEPTS)
    parts = [
        rng.normal(0, s, (n, ENTITY_DIM))
        for s, n in zip(SCALES, (SUB_CAT.max() + 1, len(SUB_CAT), len(concept_sub)), strict=True)
    ]
    v = parts[0][SUB_CAT[concept_sub]] + parts[1][concept_sub] + parts[2]
    return v / np.sqrt(ENTITY_DIM * sum(s * s for s in SCALES))


def write_entity_vectors(path: Path, vectors: np.ndarray, concepts: set[int]) -> None:
    lines = (
        entity_id(c) + "\t" + "\t".join(f"{x:.6f}" for x in vectors[c].tolist()) + "\t\n"
        for c in sorted(concepts)
    )
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("".join(lines))
