"""GENRE: large language models as data generators (the second half of ONCE).

An LLM (any OpenAI-compatible endpoint, or a local model run in process) writes three kinds of data for a
prepared dataset, which `merge` folds into a new dataset directory:

- `summarize`: a clear, neutral title for every news item (a description for every book) -> the text field
  `summary`;
- `profile`: each user's interests (topics from a fixed list, regions) -> user attributes that the
  `model.user_attributes` plugin embeds into the user vector;
- `generate`: synthetic items in a cold user's taste -> new items (flagged synthetic) in their histories.

The parts, one module each:

    prompts/      editable prompt templates, one file per task and domain, each with a version line
    templates.py  reading and filling the templates
    parsing.py    strict parsing of answers: one JSON object, checked against the task's schema
    tasks.py      the three tasks: which requests a dataset needs, and what a valid answer is
    limits.py     concurrency, requests / tokens per minute, retries with backoff, jitter and Retry-After
    backends.py   OpenAI-compatible client and local transformers model behind one interface
    store.py      SQLite response store: one row per request key, written as each answer arrives
    runner.py     the async run loop: resume, retries with the error shown to the model, summary, dry run
    importer.py   answers made elsewhere (ONCE's released logs, JSON lines) into the store, validated alike
    merge.py      a new dataset directory with the generated data

Metrics of the users with generated content are the `generated_users` slice of every evaluation
(oncerec.eval.slices): GENRE writes data and knows nothing of recommenders.
"""
