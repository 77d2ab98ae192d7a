"""oncerec's benchmarks: speed and memory measured side by side in one run, ratios against plain baselines.
Not part of the installed package: run from a clone of the repository, `make bench` or `python -m benchmarks`.

    suite.py         the sections (prepare, train, eval, dire, genre, serve, metrics) and bench.json / bench.md
    scale.py         --scale: cost growth from demo-small to a MIND-large-shaped demo
    dire.py, genre.py, serve.py, full_ranking.py   one section each
"""
