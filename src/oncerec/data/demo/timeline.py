"""The calendar: the history window, the train days, the dev day and their hourly slots."""

from __future__ import annotations

import calendar

# Time axis, as in MIND: histories before 11/9/2019, train 11/9-11/14, dev 11/15. Slots are the hours of
# train+dev (the pool of live items is fixed within one), plus one slot for the pre-period.
DAY = 86_400
SLOT_SECONDS = 3_600
TRAIN_START = calendar.timegm((2019, 11, 9, 0, 0, 0))
DEV_START = TRAIN_START + 6 * DAY
DEV_END = DEV_START + DAY
HISTORY_DAYS = 14
N_SLOTS = (DEV_END - TRAIN_START) // SLOT_SECONDS
PRE_SLOT = N_SLOTS
