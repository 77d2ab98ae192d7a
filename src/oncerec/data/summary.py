"""A prepared dataset's stats.json as the lines `oncerec prepare` and `oncerec stats` print."""

from __future__ import annotations

from pathlib import Path


def stats_lines(stats: dict, root: Path) -> list[str]:
    """Counts per split, vocabulary sizes, token lengths and what preparing took."""
    lines = [
        f"dataset: {root}",
        f"items {stats['items']:,}  users {stats['users']:,}  distinct histories {stats['histories']:,}",
        f"{'split':<8}{'impressions':>12}{'rows':>12}{'clicks':>10}{'users':>10}{'empty hist':>11}",
    ]
    for name, s in stats["splits"].items():
        lines.append(
            f"{name:<8}{s['impressions']:>12,}{s['rows']:>12,}{s['clicks']:>10,}{s['users']:>10,}"
            f"{s['empty_histories']:>11,}"
        )
    lines.append("vocab: " + ", ".join(f"{k} {v:,}" for k, v in stats["vocab"].items()))
    for tok, fields in stats["token_lengths"].items():
        for field, p in fields.items():
            if p:
                lines.append(
                    f"tokens[{tok}.{field}]: p50 {p['p50']:.0f}  p90 {p['p90']:.0f}  p99 {p['p99']:.0f}  "
                    f"max {p['max']}  truncated at {p['max_len']}: {p['truncated']:,}"
                )
    if "prepare" in stats:
        p = stats["prepare"]
        lines.append(
            f"prepared in {p['seconds']} s ({p['lines_per_s']:,} lines/s), peak memory {p['peak_rss_mb']:,} MiB"
        )
    return lines


def protocol_lines(stats: dict) -> list[str]:
    """What the format's protocol did with the users (once-goodreads), if the dataset records it."""
    if "once_goodreads" not in stats:
        return []
    p = stats["once_goodreads"]
    return [
        f"users: {p['users_with_history']:,} with a history, {p['users_dropped_one_book']:,} with one book "
        f"(no group); cold users (1-5 books): {p['cold_users_in_dataset']:,} of {p['cold_users_in_release']:,} "
        f"in the dataset ({p['cold_users_select_with']})"
    ]
