"""Evaluation: the metrics (one implementation), MIND's leaderboard files, and the slices of a split.

`metrics` needs numpy only, so that every part of oncerec can use it (the demo data scores its oracle with it);
`leaderboard` and `slices` read oncerec's data formats.
"""
