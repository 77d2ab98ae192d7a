"""The demo scales (tiny ... large): how many items, users and impressions, and impression sizes."""

from __future__ import annotations

from dataclasses import dataclass

# candidates per impression, as in MIND
MIN_CANDIDATES, MAX_CANDIDATES = 5, 50


@dataclass(frozen=True)
class DemoScale:
    """Target sizes. Impression counts are expectations (per-user counts are random); meta.json has the
    actual ones."""

    n_news: int  # items in the catalogue; each split's news.tsv lists those its behaviours reference
    n_users: int  # users drawn; a user with no impression in a split does not appear in it
    train_impressions: int
    dev_impressions: int
    mean_candidates: float  # candidates per impression before the 5..50 clip and de-duplication


SCALES: dict[str, DemoScale] = {
    # unit tests: about a second
    "tiny": DemoScale(
        n_news=300, n_users=150, train_impressions=600, dev_impressions=300, mean_candidates=12.0
    ),
    # the quickstart: enough signal to train NRMS in minutes on a laptop
    "small": DemoScale(
        n_news=6_000, n_users=6_000, train_impressions=30_000, dev_impressions=8_000, mean_candidates=12.0
    ),
    # shaped like MIND-small
    "medium": DemoScale(
        n_news=30_000, n_users=50_000, train_impressions=150_000, dev_impressions=70_000, mean_candidates=12.0
    ),
    # shaped like MIND-large (about 15M train candidate rows); streamed in bounded memory
    "large": DemoScale(
        n_news=160_000,
        n_users=1_000_000,
        train_impressions=2_000_000,
        dev_impressions=300_000,
        mean_candidates=7.5,
    ),
}
