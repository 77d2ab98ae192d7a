"""`write_demo_mind`: the whole generator, from the catalogue to meta.json.

Generation streams over chunks of users with their own random sub-streams, so MIND-large-sized data fits in
bounded memory, and the output depends only on (scale, seed, fresh).
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from oncerec.data.demo.arrays import csr_starts
from oncerec.data.demo.catalogue import Catalogue, Pools, draw_catalogue
from oncerec.data.demo.entities import entity_vectors
from oncerec.data.demo.impressions import draw_histories, draw_impressions
from oncerec.data.demo.scales import SCALES, DemoScale
from oncerec.data.demo.timeline import DAY, DEV_END, DEV_START, HISTORY_DAYS, TRAIN_START
from oncerec.data.demo.users import ACTIVITY_SHAPE, USER_BIAS_SD, Users, draw_interests, drift
from oncerec.data.demo.vocabulary import CONCEPT_SYNONYMS, FRESH_WORDS, SEEN_WORDS
from oncerec.data.demo.write import SplitWriter, format_date, write_news
from oncerec.errors import OncerecError
from oncerec.eval.metrics import evaluate_groups
from oncerec.paths import check_new_dir, publish_dir

GENERATOR_VERSION = 3  # 3: title entities and entity_embedding.vec
CHUNK_USERS = 25_000


def write_demo_mind(
    out: str | Path, scale: str = "small", seed: int = 0, progress: bool = False, fresh: float = 0.0
) -> dict:
    """Write the demo dataset; return a summary dict (counts per split, ctr, oracle AUC on dev).
    `fresh`: the share of the dev day's new items written with concept words no earlier item uses.

    `out` must not exist or be an empty directory; files are written into a temporary sibling that is renamed
    to `out` at the end, so `out` is either complete or absent. The same (scale, seed) gives byte-identical
    files. `progress` shows tqdm bars on stderr.
    """
    if scale not in SCALES:
        raise OncerecError(f"unknown demo scale `{scale}`; valid scales: {', '.join(SCALES)}")
    if seed < 0:
        raise OncerecError(f"demo seed must be a non-negative integer, got {seed}")
    if not 0.0 <= fresh <= 1.0:
        raise OncerecError(f"demo fresh share must be in [0, 1], got {fresh}")
    out = Path(out)
    check_new_dir(out, "OUT")
    sizes = SCALES[scale]
    out.parent.mkdir(parents=True, exist_ok=True)
    # not tempfile.mkdtemp: its private mode would stick to `out` after the rename
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        summary = _generate(tmp, scale, sizes, seed, progress, fresh)
        publish_dir(tmp, out, "meta.json")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


def _generate(
    folder: Path, scale: str, sizes: DemoScale, seed: int, progress: bool, fresh: float = 0.0
) -> dict:
    # a fourth stream for the fresh-word draws, a fifth for the entity vectors: a child depends only on its
    # position, so the first three (and so fresh=0 data) are as before
    catalogue_seed, text_seed, users_seed, fresh_seed, entity_seed = np.random.SeedSequence(seed).spawn(5)
    cat = draw_catalogue(np.random.default_rng(catalogue_seed), sizes.n_news)
    pools = Pools(cat)
    n_chunks = -(-sizes.n_users // CHUNK_USERS)
    train_clicks = np.zeros(sizes.n_news, np.int64)
    with ExitStack() as files:
        train = SplitWriter(files, folder / "train", cat.ids, oracle=False)
        dev = SplitWriter(files, folder / "dev", cat.ids, oracle=True)
        with tqdm(
            total=sizes.n_users, unit="user", desc=f"demo {scale} behaviours", disable=not progress
        ) as bar:
            for chunk, chunk_seed in enumerate(users_seed.spawn(n_chunks)):
                first = chunk * CHUNK_USERS
                n = min(CHUNK_USERS, sizes.n_users - first)
                _chunk(
                    np.random.default_rng(chunk_seed), cat, pools, sizes, first, n, train, dev, train_clicks
                )
                bar.update(n)
    new = (cat.publish >= DEV_START) & (np.random.default_rng(fresh_seed).random(len(cat.sub)) < fresh)
    words = (
        SEEN_WORDS if fresh else CONCEPT_SYNONYMS,
        FRESH_WORDS if fresh else CONCEPT_SYNONYMS,
    )
    vectors = entity_vectors(np.random.default_rng(entity_seed))
    write_news(
        folder, cat, np.random.default_rng(text_seed), (train.used, dev.used), progress, new, words, vectors
    )

    item, label, prob, size = (np.concatenate(parts) for parts in zip(*dev.kept, strict=True))
    impression = np.repeat(np.arange(len(size)), size)

    def mean_auc(score: np.ndarray) -> float:
        # Tied scores get average ranks: popularity gives many candidates the same click count, and those
        # ties count as coin flips, not by candidate order.
        return round(evaluate_groups(label, score, impression, ["auc"], ties="average")["auc"], 4)

    summary = {
        "generator": "oncerec.data.demo",
        "version": GENERATOR_VERSION,
        "scale": scale,
        "seed": seed,
        "sizes": asdict(sizes),
        "fresh": {
            "share": fresh,
            "items": int(new.sum()),
            "dev_day_items": int((cat.publish >= DEV_START).sum()),
        },
        "periods": {
            "history": f"{format_date(TRAIN_START - HISTORY_DAYS * DAY)}-{format_date(TRAIN_START - DAY)}",
            "train": f"{format_date(TRAIN_START)}-{format_date(DEV_START - DAY)}",
            "dev": f"{format_date(DEV_START)}-{format_date(DEV_END - DAY)}",
        },
        "train": train.stats(),
        "dev": dev.stats()
        | {
            "oracle_auc": mean_auc(prob),
            "popularity_auc": mean_auc(train_clicks[item].astype(np.float64)),
        },
    }
    (folder / "meta.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def _chunk(
    rng: np.random.Generator,
    cat: Catalogue,
    pools: Pools,
    sizes: DemoScale,
    first: int,
    n: int,
    train: SplitWriter,
    dev: SplitWriter,
    train_clicks: np.ndarray,
) -> None:
    """Simulate users first..first+n-1 (histories, train and dev impressions) and write their lines."""
    a = draw_interests(rng, cat.sub_popularity, n)
    users = Users(first, rng.normal(0.0, USER_BIAS_SD, n), a, drift(rng, a, cat.sub_popularity))
    activity = rng.gamma(ACTIVITY_SHAPE, 1.0 / ACTIVITY_SHAPE, n)
    n_train = rng.poisson(activity * sizes.train_impressions / sizes.n_users)
    n_dev = rng.poisson(activity * sizes.dev_impressions / sizes.n_users)

    hist_start, hist_items = draw_histories(rng, cat, pools, users)
    hist_ids = cat.ids[hist_items].tolist()
    pre = [hist_ids[hist_start[u] : hist_start[u + 1]] for u in range(n)]

    tr = draw_impressions(rng, cat, pools, users, n_train, (TRAIN_START, DEV_START), sizes.mean_candidates)
    train.write(rng, tr, [" ".join(h) for h in pre], first)
    train.used[hist_items[np.repeat(n_train > 0, np.diff(hist_start))]] = True
    train_clicks += np.bincount(tr.item[tr.label], minlength=len(train_clicks))

    # dev histories: the pre-period snapshot plus train-period clicks, in time order, without repeats
    clicked = np.flatnonzero(tr.label)
    click_imp = np.searchsorted(tr.start, clicked, side="right") - 1
    click_user = tr.user[click_imp]
    order = np.lexsort((clicked, tr.time[click_imp], click_user))
    click_start = csr_starts(click_user[order], n)
    click_ids = cat.ids[tr.item[clicked[order]]].tolist()
    dev_hist = [
        " ".join(dict.fromkeys(pre[u] + click_ids[click_start[u] : click_start[u + 1]])) if n_dev[u] else ""
        for u in range(n)
    ]
    dv = draw_impressions(rng, cat, pools, users, n_dev, (DEV_START, DEV_END), sizes.mean_candidates)
    dev.write(rng, dv, dev_hist, first)
    dev_users = n_dev > 0
    dev.used[hist_items[np.repeat(dev_users, np.diff(hist_start))]] = True
    dev.used[tr.item[clicked[dev_users[click_user]]]] = True
