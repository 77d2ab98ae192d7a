"""Synthetic data in the raw MIND format, drawn from a known click model.

`write_demo_mind` writes a folder laid out exactly like MIND (train/ and dev/, each with news.tsv and
behaviors.tsv), so the real MIND reader and the whole pipeline run on it unchanged. dev/oracle.tsv adds the
true click probability of every dev candidate, and meta.json a summary (counts, CTR, the oracle's AUC and a
popularity baseline's AUC on dev).

The generative model, one module for each part (each explains its own):

    vocabulary.py   topics, concepts and their synonyms, templates, names; the fresh-word split
    text.py         an item's title and abstract from the templates, a synonym drawn per use
    scales.py       the sizes, tiny ... large
    timeline.py     the history window, the train days, the dev day, hourly slots
    catalogue.py    items: subcategory, concept, latent quality, tone, lifetime; samplers of live items
    users.py        interests and their drift, the click probability, what a user is shown
    impressions.py  histories (snapshots before the split), impressions and their labels
    arrays.py       vectorised helpers over grouped rows
    write.py        the MIND files
    generate.py     `write_demo_mind`: all of it, streamed over chunks of users
    formats.py      `write_demo_data`: that, or Goodreads files of the same world (`oncerec demo-data`)
"""

from oncerec.data.demo.formats import write_demo_data
from oncerec.data.demo.generate import GENERATOR_VERSION, write_demo_mind
from oncerec.data.demo.scales import SCALES

__all__ = ["GENERATOR_VERSION", "SCALES", "write_demo_data", "write_demo_mind"]
