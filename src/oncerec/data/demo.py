"""Synthetic data in the raw MIND format, drawn from a known click model.

`write_demo_mind` writes a folder laid out exactly like MIND (train/ and dev/, each with news.tsv and
behaviors.tsv), so the real MIND reader and the whole pipeline run on it unchanged. dev/oracle.tsv adds the
true click probability of every dev candidate, and meta.json a summary (counts, CTR, the oracle's AUC and a
popularity baseline's AUC on dev).

The generative model, in one sitting:

* News. Each item is about one concept of one subcategory (of a category, see TOPICS). Its title and abstract
  fill generic templates with a synonym of that concept chosen at random per use, so one latent topic shows
  up under several surface words and a model that reads text beats one that memorises word ids. Each item
  has a latent quality q ~ N(0, 1), a publish time and a lifetime (it is shown in impressions while live).
  Part of q shows in the headline, as appeal does in real news: the title opens with a lead word ("Brief:"
  ... "Stunning:") whose register is the quintile of q + noise, so text reveals some of q and ids the rest.
* Users like 2-4 subcategories (often siblings in one category), each with a weight and a favourite concept.
  Interests drift: set A holds before the train period, set B (one interest swapped for a fifth of the users,
  weights perturbed) at the end of dev; at time t the click model blends them with alpha(t) going 0 -> 1.
* Clicks: p = sigmoid(BIAS + user bias + AFFINITY * affinity + QUALITY * q). The affinity sums the user's
  interest weights (the largest is 1) over a matching subcategory (x (1 + CONCEPT_BONUS) on the favourite
  concept) and CATEGORY_SHARE of the weight over a matching category only.
* Histories are a snapshot before the split, as in MIND: clicks drawn in proportion to p (set A) among the
  items of the two weeks before train. Dev histories append the user's train-period clicks. Every 33rd user
  has no pre-period history (cold start).
* Impressions show items live at that hour: a PERSONAL_SHARE of personalised picks (from the user's current
  interests) and otherwise popularity-weighted picks. Labels are Bernoulli(p), redrawn until at least one
  click (then one click forced, chosen in proportion to p), which keeps ranking by p optimal.

* Fresh words (`fresh` > 0, off by default): real news brings words the training clicks never showed, which
  a pretrained language model knows and a word table learned from clicks cannot. Each concept's synonyms split
  in two: the first half (rounded up) are the only ones written in items published before the dev day; the
  second half only in a share `fresh` of the items published on the dev day (the others keep the first half).
  Nothing else changes (same items, users, clicks and oracle), so a word model loses exactly the concept
  words of those new items.

Generation streams over chunks of users with their own random sub-streams, so MIND-large-sized data fits in
bounded memory, and the output depends only on (scale, seed).
"""

from __future__ import annotations

import calendar
import json
import math
import os
import re
import shutil
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
from tqdm import tqdm

from oncerec.errors import OncerecError
from oncerec.eval.metrics import evaluate_groups
from oncerec.paths import check_new_dir, publish_dir

GENERATOR_VERSION = 2

# category -> subcategory -> concepts. A concept is "synonym|synonym|...": every synonym is a noun phrase
# that reads well after "about" and before "could", and one is drawn at random each time the concept is used.
TOPICS: dict[str, dict[str, tuple[str, ...]]] = {
    "finance": {
        "markets": (
            "stocks|equities|shares|the stock market",
            "Wall Street|the Dow|the S&P 500|blue chips",
            "Treasury yields|bonds|the bond market|government debt",
            "interest rates|the Federal Reserve|the Fed|rate cuts",
        ),
        "personalfinance": (
            "retirement savings|401(k) plans|IRAs|nest eggs",
            "credit cards|credit scores|card debt|consumer credit",
            "taxes|tax returns|tax deductions|the IRS",
            "budgeting|household budgets|saving money|frugal living",
        ),
        "realestate": (
            "mortgages|home loans|mortgage rates|refinancing",
            "home prices|the housing market|house values|real estate prices",
            "rent|renters|apartment rents|landlords",
            "first-time buyers|starter homes|homebuyers|new homeowners",
        ),
    },
    "sports": {
        "basketball_nba": (
            "the NBA|pro basketball|hoops|NBA teams",
            "LeBron James|the Lakers|LeBron|the Los Angeles Lakers",
            "three-pointers|long-range shooting|the three-point line|jump shots",
            "the NBA playoffs|the postseason|a playoff run|the NBA Finals",
        ),
        "football_nfl": (
            "the NFL|pro football|the gridiron|NFL teams",
            "quarterbacks|the QB position|signal-callers|passers",
            "the Super Bowl|the championship game|the big game",
            "touchdowns|the end zone|scoring drives|red-zone trips",
        ),
        "soccer": (
            "soccer|the beautiful game|football clubs|the pitch",
            "the Premier League|English football|the EPL|top-flight clubs",
            "the World Cup|international soccer|the national team",
            "goalkeepers|the keeper|shot-stoppers|clean sheets",
        ),
        "tennis": (
            "tennis|the pro tour|the court|tennis stars",
            "Grand Slams|Wimbledon|the US Open|major titles",
            "serves|aces|the big serve|service games",
            "the tennis rankings|the top seed|the world No. 1",
        ),
    },
    "health": {
        "medical": (
            "cancer|tumors|oncology|cancer treatment",
            "heart disease|heart health|cardiac care|heart attacks",
            "vaccines|flu shots|vaccinations|immunization",
            "hospitals|emergency rooms|doctors|the ER",
        ),
        "fitness": (
            "running|jogging|marathons|long runs",
            "workouts|strength training|the gym|lifting weights",
            "yoga|stretching|flexibility|mobility drills",
            "walking|daily steps|step counts|brisk walks",
        ),
        "wellness": (
            "sleep|insomnia|a good night's rest|sleep habits",
            "stress|anxiety|mental health|burnout",
            "diets|weight loss|calorie counting|dieting",
            "vitamins|supplements|vitamin D|multivitamins",
        ),
    },
    "travel": {
        "airlines": (
            "airlines|air travel|flights|carriers",
            "airports|TSA lines|security checkpoints|terminals",
            "cheap flights|airfare|ticket prices|flight deals",
            "frequent flyer miles|loyalty points|airline miles|rewards programs",
        ),
        "destinations": (
            "beaches|beach towns|the coast|island getaways",
            "national parks|hiking trails|Yellowstone|the great outdoors",
            "Europe|Paris|Italy|European cities",
            "road trips|scenic drives|the open road|highway stops",
        ),
        "lodging": (
            "hotels|resorts|hotel rooms|luxury stays",
            "Airbnb|vacation rentals|short-term rentals|rental cabins",
            "cruises|cruise ships|cruise lines|ocean voyages",
        ),
    },
    "technology": {
        "gadgets": (
            "smartphones|iPhones|Android phones|new phones",
            "laptops|notebooks|Chromebooks|MacBooks",
            "smartwatches|wearables|fitness trackers|the Apple Watch",
            "headphones|earbuds|AirPods|wireless headphones",
        ),
        "ai": (
            "artificial intelligence|AI|machine learning|algorithms",
            "chatbots|virtual assistants|voice assistants|Alexa",
            "robots|robotics|automation|factory robots",
            "self-driving cars|autonomous vehicles|robotaxis|driverless cars",
        ),
        "cybersecurity": (
            "hackers|cyberattacks|hacking|cybercriminals",
            "data breaches|leaked data|stolen passwords|exposed records",
            "ransomware|malware|computer viruses|phishing scams",
            "online privacy|data privacy|online tracking|personal data",
        ),
    },
    "politics": {
        "elections": (
            "voters|the electorate|the ballot box|polling places",
            "the polls|opinion polls|a new survey|approval ratings",
            "candidates|the campaign trail|presidential hopefuls|challengers",
            "primaries|caucuses|early voting states|Iowa",
        ),
        "congress": (
            "Congress|lawmakers|Capitol Hill|legislators",
            "the Senate|senators|the upper chamber",
            "a new bill|legislation|a spending bill|the measure",
            "impeachment|the inquiry|House investigators|public hearings",
        ),
        "foreignpolicy": (
            "trade talks|tariffs|the trade war|trade negotiations",
            "diplomats|diplomacy|ambassadors|the State Department",
            "NATO|allies|the alliance|defense ministers",
            "sanctions|embargoes|economic penalties|export bans",
        ),
    },
    "entertainment": {
        "movies": (
            "movies|films|the box office|blockbusters",
            "superhero movies|Marvel|comic book films|the Avengers",
            "the Oscars|the Academy Awards|awards season|best picture",
            "horror films|scary movies|thrillers|horror franchises",
        ),
        "tv": (
            "TV shows|television|the series|prime-time TV",
            "streaming|Netflix|Disney+|streaming services",
            "reality TV|reality shows|contestants|the reality series",
            "late-night shows|talk shows|late-night hosts|sitcoms",
        ),
        "celebrity": (
            "celebrities|stars|Hollywood|A-listers",
            "the royal family|Prince Harry|Meghan Markle|the royals",
            "red carpet looks|celebrity fashion|the red carpet|designer gowns",
            "celebrity couples|a celebrity breakup|engagements|a Hollywood wedding",
        ),
    },
    "food": {
        "recipes": (
            "recipes|home cooking|weeknight dinners|easy meals",
            "Thanksgiving dinner|turkey|stuffing|holiday side dishes",
            "baking|cookies|pies|homemade bread",
            "slow cooker meals|casseroles|one-pot dinners|Instant Pot recipes",
        ),
        "restaurants": (
            "restaurants|diners|eateries|new restaurants",
            "fast food|burger chains|drive-thrus|fried chicken",
            "pizza|pizzerias|deep-dish pizza|pizza chains",
            "food trucks|street food|pop-up kitchens|food halls",
        ),
        "drinks": (
            "coffee|espresso|lattes|coffee shops",
            "wine|vineyards|wine lovers|red wine",
            "craft beer|breweries|IPAs|beer lovers",
        ),
    },
    "science": {
        "space": (
            "NASA|the space agency|astronauts|the space station",
            "Mars|the red planet|Martian soil|Mars rovers",
            "asteroids|meteors|comets|a meteor shower",
            "rockets|SpaceX|rocket launches|boosters",
        ),
        "climate": (
            "climate change|global warming|rising temperatures|the climate crisis",
            "wildfires|forest fires|blazes|fire season",
            "oceans|coral reefs|sea levels|marine life",
            "plastic pollution|recycling|plastic waste|landfills",
        ),
        "wildlife": (
            "wildlife|endangered species|conservation|wild animals",
            "dogs|puppies|rescue dogs|pet owners",
            "sharks|whales|dolphins|sea creatures",
            "bears|wolves|mountain lions|predators",
        ),
    },
    "weather": {
        "weathernews": (
            "snow|snowfall|winter storms|a blizzard",
            "cold weather|a cold snap|freezing temperatures|Arctic air",
            "rain|heavy rain|downpours|flooding",
            "the weekend forecast|sunshine|mild weather|clear skies",
        ),
        "severeweather": (
            "hurricanes|tropical storms|storm surge|the hurricane season",
            "tornadoes|twisters|tornado warnings|severe storms",
            "earthquakes|quakes|aftershocks|seismic activity",
            "heat waves|extreme heat|record highs|scorching temperatures",
        ),
    },
    "autos": {
        "autonews": (
            "electric cars|EVs|Tesla|electric vehicles",
            "car recalls|safety recalls|defects|airbag recalls",
            "gas prices|fuel costs|prices at the pump|gasoline",
        ),
        "autobuying": (
            "used cars|pre-owned cars|car dealers|dealerships",
            "pickup trucks|trucks|the F-150|full-size pickups",
            "SUVs|crossovers|family SUVs|compact SUVs",
            "car loans|auto loans|lease deals|car payments",
        ),
        "motorsports": (
            "NASCAR|stock car racing|the Cup Series",
            "Formula 1|F1|Grand Prix racing|the F1 grid",
            "racing drivers|pit crews|the checkered flag|pole position",
        ),
    },
    "lifestyle": {
        "homeandgarden": (
            "home decor|interior design|living rooms|decorating",
            "gardening|gardens|backyard plants|vegetable gardens",
            "home organization|decluttering|closets|tidying up",
        ),
        "parenting": (
            "parenting|moms and dads|family life|raising kids",
            "toddlers|babies|newborns|infants",
            "teenagers|teens|high schoolers|adolescents",
            "screen time|kids and phones|children online|kids' apps",
        ),
        "shopping": (
            "Black Friday|holiday deals|doorbusters|holiday shopping",
            "Amazon|online shopping|e-commerce|free shipping",
            "gift ideas|holiday gifts|stocking stuffers|gift guides",
        ),
    },
    "music": {
        "musicnews": (
            "pop stars|pop music|chart-toppers|the charts",
            "new albums|album releases|a new record|debut albums",
            "the Grammys|music awards|Grammy nominations",
        ),
        "livemusic": (
            "concerts|tours|live shows|world tours",
            "music festivals|Coachella|festival lineups|headliners",
            "concert tickets|ticket prices|Ticketmaster|resale tickets",
        ),
        "genres": (
            "country music|Nashville|country singers|the CMA Awards",
            "hip-hop|rap|rappers|hip-hop artists",
            "rock bands|classic rock|guitar legends|rock and roll",
        ),
    },
    "education": {
        "k12": (
            "public schools|school districts|classrooms|local schools",
            "teachers|educators|teacher pay|school staff",
            "standardized tests|test scores|exams|the SAT",
            "school lunches|cafeterias|school meals|free lunch programs",
        ),
        "college": (
            "college|universities|campus life|higher education",
            "student loans|student debt|tuition|college costs",
            "college admissions|applications|acceptance letters|admissions officers",
            "online courses|remote learning|online degrees|e-learning",
        ),
    },
}

# Who reads about each category, for the {who} slot of the templates.
AUDIENCES: dict[str, str] = {
    "finance": "investors|savers|consumers",
    "sports": "fans|coaches|players",
    "health": "patients|doctors|experts",
    "travel": "travelers|tourists|vacationers",
    "technology": "users|tech fans|engineers",
    "politics": "voters|officials|analysts",
    "entertainment": "fans|viewers|critics",
    "food": "home cooks|diners|foodies",
    "science": "scientists|researchers|experts",
    "weather": "residents|forecasters|commuters",
    "autos": "drivers|car buyers|motorists",
    "lifestyle": "families|homeowners|shoppers",
    "music": "fans|listeners|critics",
    "education": "students|parents|teachers",
}

# Templates shared by all topics. Slots: {c} the item's concept, {c2} another concept of its subcategory,
# {who} the category's audience, {person}, {place}, {num}. Modal verbs keep singular and plural synonyms
# grammatical.
TITLE_TEMPLATES = (
    "What you need to know about {c} this week",
    "What {who} need to know about {c} right now",
    "{num} things {who} should know about {c}",
    "How {c} could change the way {who} think about {c2}",
    "Why {c} may matter more than ever for {who}",
    "{person} says {c} will be the big story of the year",
    "{person} weighs in on {c} and {c2}",
    "The surprising truth about {c} that {who} often miss",
    "{place} takes a closer look at {c} amid the buzz over {c2}",
    "Everything we know so far about {c} in {place}",
    "Experts warn {who} about {c} ahead of the holidays",
    "{c}: what comes next after a wild week",
    "{person} opens up about {c} in a new interview",
    "Here is why {who} in {place} are watching {c} closely",
    "A new look at {c} and what it means for {c2}",
    "{c} in {place}: the numbers behind the headlines",
    "The debate over {c} is heating up in {place}",
    "{num} big questions about {c} heading into the weekend",
    "{person} has a bold prediction about {c}",
    "From {c} to {c2}: the week in review",
)
# lead words by tone, from the dullest items to the most appealing (see TONE_NOISE)
TONE_PREFIXES = (
    ("Brief: ", "Notice: ", "In brief: "),
    ("Update: ", "Explainer: ", "Roundup: "),
    ("Report: ", "Analysis: ", "News: "),
    ("Exclusive: ", "Must read: ", "Breaking: "),
    ("Stunning: ", "Shocking: ", "Unbelievable: "),
)
ABSTRACT_SENTENCES = (
    "{person} said {c} could affect {who} in {place} for the next {num} months.",
    "Experts say {c} will remain a key issue for {who}, with {c2} also in focus.",
    "The news comes amid fresh attention on {c2} across {place}.",
    "Here is a look at what {c} could mean for {who} this year.",
    "A new survey found that {num} percent of {who} are paying closer attention to {c}.",
    "Officials in {place} are watching {c} closely after a busy week.",
    "{person}, who has followed {c} for years, shared {num} tips with {who}.",
    "The latest numbers on {c} surprised many {who} in {place}.",
    "Critics argue that too little has been said about {c2} so far.",
    "Read on for everything {who} need to know about {c} and {c2}.",
    "It is the latest twist in a story that has kept {who} talking for {num} days.",
)
FIRST_NAMES = (
    "Maria", "James", "Aisha", "David", "Sofia", "Michael", "Priya", "Robert", "Elena", "Kevin",
    "Grace", "Carlos", "Hannah", "Daniel", "Mei", "Thomas", "Olivia", "Ahmed", "Laura", "Marcus",
)  # fmt: skip
LAST_NAMES = (
    "Johnson", "Garcia", "Chen", "Smith", "Patel", "Williams", "Nguyen", "Brown", "Martinez", "Davis",
    "Kim", "Lopez", "Wilson", "Anderson", "Taylor", "Moore", "Jackson", "Clark", "Lewis", "Walker",
)  # fmt: skip
PLACES = (
    "New York", "Chicago", "Texas", "California", "Seattle", "Florida", "Boston", "Denver", "Atlanta",
    "Ohio", "Phoenix", "Miami", "the Midwest", "London", "Canada", "Michigan", "Portland", "Nashville",
    "Arizona", "Minnesota", "Dallas", "San Diego", "Philadelphia", "Colorado",
)  # fmt: skip
TITLE_WORDS = (6, 16)
EMPTY_ABSTRACT_SHARE = 0.1


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
    # the README's quick start: enough signal to train NRMS in minutes on a laptop
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

# Catalogue.
PRE_PERIOD_SHARE = 0.4  # of items, published in the history window; the rest during train+dev
LIFETIME_DAYS = (1.0, 4.0)
SUBCATEGORY_CONCENTRATION = 3.0  # Dirichlet over subcategories: how uneven topic sizes are

# Users.
MIN_INTERESTS, MAX_INTERESTS = 2, 4
# a further interest is this much likelier (in log-odds) in the first one's category
SIBLING_BOOST = math.log(4.0)
INTEREST_CONCENTRATION = 1.5  # Dirichlet over a user's interests
DRIFT_SHARE = 0.2  # users whose set B swaps one interest
DRIFT_WEIGHT_SD = 0.5
USER_BIAS_SD = 0.3
ACTIVITY_SHAPE = 1.0  # impressions per user scale with activity ~ Gamma(shape, 1 / shape): mean 1, skewed
COLD_EVERY = 33  # every COLD_EVERY-th user has an empty pre-period history
HISTORY_MEAN, HISTORY_DISPERSION, MAX_HISTORY = 23, 3, 60
HISTORY_OVERSAMPLE = 3  # history clicks are picked among this many draws per click, in proportion to p

# Click model.
BIAS = -4.5
AFFINITY = 2.4
QUALITY = 0.7
CONCEPT_BONUS = 0.6
# An item's tone is the quintile of q + N(0, TONE_NOISE^2): a text model can learn E[q | tone], which recovers
# nearly 90% of what quality adds to the AUC of an affinity-only ranking (the rest needs item ids or popularity).
TONE_NOISE = 0.25
_TONE_EDGES = math.sqrt(1.0 + TONE_NOISE**2) * np.array([-0.8416, -0.2533, 0.2533, 0.8416])
CATEGORY_SHARE = 0.3

# Impressions.
MIN_CANDIDATES, MAX_CANDIDATES = 5, 50
# negative binomial shape of (candidates - MIN_CANDIDATES): small impressions dominate
CANDIDATE_DISPERSION = 1.5
PERSONAL_SHARE = 0.2
EXPOSURE = 0.5  # popularity-weighted picks are proportional to exp(EXPOSURE * q)
MAX_LABEL_REDRAWS = 50

CHUNK_USERS = 25_000

# Vocabulary indices: subcategories and concepts numbered in TOPICS order.
_CATEGORIES = list(TOPICS)
_SUBCATEGORIES = [(cat, sub) for cat in TOPICS for sub in TOPICS[cat]]
_SUB_CAT = np.array([_CATEGORIES.index(cat) for cat, _ in _SUBCATEGORIES])
_SUB_N_CONCEPTS = np.array([len(TOPICS[cat][sub]) for cat, sub in _SUBCATEGORIES])
_SUB_FIRST_CONCEPT = np.concatenate([[0], np.cumsum(_SUB_N_CONCEPTS)[:-1]])
_CONCEPT_SYNONYMS = [tuple(c.split("|")) for cat, sub in _SUBCATEGORIES for c in TOPICS[cat][sub]]
# with fresh words: the first half of each concept's synonyms (rounded up) before the dev day, the rest after
_SEEN_WORDS = [s[: -(-len(s) // 2)] for s in _CONCEPT_SYNONYMS]
_FRESH_WORDS = [s[-(-len(s) // 2) :] for s in _CONCEPT_SYNONYMS]
_AUDIENCES = {cat: tuple(a.split("|")) for cat, a in AUDIENCES.items()}


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


# ----------------------------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class _Catalogue:
    """Latent item attributes; items are numbered in publish order."""

    sub: np.ndarray
    concept: np.ndarray  # index into _CONCEPT_SYNONYMS
    quality: np.ndarray
    tone: np.ndarray  # index into TONE_PREFIXES
    publish: np.ndarray  # epoch seconds
    expire: np.ndarray
    ids: np.ndarray  # object array of "N12345"; random, so that ids carry no hint of time or topic
    sub_popularity: np.ndarray  # share of items (and of user interests) per subcategory


def _catalogue(rng: np.random.Generator, n: int) -> _Catalogue:
    sub_pop = rng.dirichlet(np.full(len(_SUBCATEGORIES), SUBCATEGORY_CONCENTRATION))
    n_pre = round(PRE_PERIOD_SHARE * n)
    publish = np.sort(
        np.concatenate(
            [
                rng.integers(TRAIN_START - HISTORY_DAYS * DAY, TRAIN_START, n_pre),
                rng.integers(TRAIN_START, DEV_END, n - n_pre),
            ]
        )
    )
    sub = rng.choice(len(sub_pop), n, p=sub_pop)
    concept = _SUB_FIRST_CONCEPT[sub] + (rng.random(n) * _SUB_N_CONCEPTS[sub]).astype(np.int64)
    quality = rng.standard_normal(n)
    expire = publish + (rng.uniform(*LIFETIME_DAYS, n) * DAY).astype(np.int64)
    ids = np.array([f"N{10_000 + k}" for k in rng.permutation(n)], dtype=object)
    tone = np.searchsorted(_TONE_EDGES, quality + rng.normal(0.0, TONE_NOISE, n))
    return _Catalogue(sub, concept, quality, tone, publish, expire, ids, sub_pop)


class _Pools:
    """Weighted samplers over the items of each slot (live ones; all pre-period ones for PRE_SLOT).

    One slot's items are a contiguous run sorted by subcategory, and one cumulative weight array spans all
    runs, so a draw from any (slot, subcategory) or whole slot is one vectorised searchsorted.
    """

    def __init__(self, cat: _Catalogue):
        n_sub = len(_SUBCATEGORIES)
        runs, self.bounds, start = [], np.zeros((N_SLOTS + 1, n_sub + 1), np.int64), 0
        for slot in range(N_SLOTS + 1):
            if slot == PRE_SLOT:
                items = np.flatnonzero(cat.publish < TRAIN_START)
            else:
                t = TRAIN_START + slot * SLOT_SECONDS
                items = np.flatnonzero((cat.publish <= t) & (cat.expire > t))
                # a small catalogue may have too few live items for a full impression: add the latest ones
                n_published = int(np.searchsorted(cat.publish, t, side="right"))
                if len(items) < MAX_CANDIDATES:
                    items = np.union1d(items, np.arange(max(0, n_published - MAX_CANDIDATES), n_published))
            items = items[np.argsort(cat.sub[items], kind="stable")]
            self.bounds[slot] = start + np.concatenate(
                [[0], np.cumsum(np.bincount(cat.sub[items], minlength=n_sub))]
            )
            runs.append(items)
            start += len(items)
        self.items = np.concatenate(runs)
        self.cum = np.concatenate([[0.0], np.cumsum(np.exp(EXPOSURE * cat.quality[self.items]))])

    def draw(self, lo: np.ndarray, hi: np.ndarray, u: np.ndarray) -> np.ndarray:
        """One item per row, from run [lo, hi) in proportion to its exposure weight; u ~ U[0, 1)."""
        target = self.cum[lo] + u * (self.cum[hi] - self.cum[lo])
        pos = np.searchsorted(self.cum, target, side="right") - 1
        return self.items[np.clip(pos, lo, hi - 1)]


@dataclass(frozen=True)
class _Interests:
    """Per user, MAX_INTERESTS slots; unused slots have sub = concept = cat = -1 and weight 0."""

    sub: np.ndarray
    concept: np.ndarray
    cat: np.ndarray
    weight: np.ndarray  # the largest is 1


def _interests(rng: np.random.Generator, sub_pop: np.ndarray, n: int) -> _Interests:
    """Interest set A: an anchor subcategory drawn by popularity, the others likelier among its siblings."""
    k = rng.integers(MIN_INTERESTS, MAX_INTERESTS + 1, n)
    anchor = rng.choice(len(sub_pop), n, p=sub_pop)
    score = _gumbel_scores(rng, sub_pop, _SUB_CAT[anchor])
    score[np.arange(n), anchor] = np.inf
    top = np.argsort(-score, axis=1, kind="stable")[:, :MAX_INTERESTS]
    used = np.arange(MAX_INTERESTS) < k[:, None]
    weight = rng.gamma(INTEREST_CONCENTRATION, size=(n, MAX_INTERESTS)) * used
    return _make_interests(rng, np.where(used, top, -1), weight)


def _drift(rng: np.random.Generator, a: _Interests, sub_pop: np.ndarray) -> _Interests:
    """Interest set B: for DRIFT_SHARE of users one interest moves (often to a sibling); weights wobble."""
    n = len(a.sub)
    used = a.sub >= 0
    slot = (rng.random(n) * used.sum(1)).astype(np.int64)
    rows = np.arange(n)
    score = _gumbel_scores(rng, sub_pop, a.cat[rows, slot])
    np.put_along_axis(score, np.where(used, a.sub, a.sub[:, :1]), -np.inf, axis=1)
    moved = rng.random(n) < DRIFT_SHARE
    sub = a.sub.copy()
    sub[rows[moved], slot[moved]] = score.argmax(1)[moved]
    weight = a.weight * np.exp(rng.normal(0.0, DRIFT_WEIGHT_SD, a.weight.shape))
    b = _make_interests(rng, sub, weight)
    # unmoved interests keep their favourite concept
    return _Interests(b.sub, np.where(sub == a.sub, a.concept, b.concept), b.cat, b.weight)


def _gumbel_scores(rng: np.random.Generator, sub_pop: np.ndarray, near_cat: np.ndarray) -> np.ndarray:
    """Gumbel-perturbed log-popularity of each subcategory per row, boosted in category `near_cat`."""
    sibling = _SUB_CAT[None, :] == near_cat[:, None]
    return np.log(sub_pop)[None, :] + SIBLING_BOOST * sibling + rng.gumbel(size=(len(near_cat), len(sub_pop)))


def _make_interests(rng: np.random.Generator, sub: np.ndarray, weight: np.ndarray) -> _Interests:
    used = sub >= 0
    s = np.where(used, sub, 0)
    concept = _SUB_FIRST_CONCEPT[s] + (rng.random(sub.shape) * _SUB_N_CONCEPTS[s]).astype(np.int64)
    return _Interests(
        sub,
        np.where(used, concept, -1),
        np.where(used, _SUB_CAT[s], -1),
        weight / weight.max(1, keepdims=True),
    )


def _affinity(it: _Interests, users: np.ndarray, items: np.ndarray, cat: _Catalogue) -> np.ndarray:
    same_sub = it.sub[users] == cat.sub[items][:, None]
    same_concept = it.concept[users] == cat.concept[items][:, None]
    same_cat = it.cat[users] == _SUB_CAT[cat.sub[items]][:, None]
    match = np.where(same_sub, 1.0 + CONCEPT_BONUS * same_concept, CATEGORY_SHARE * same_cat)
    return (it.weight[users] * match).sum(1)


@dataclass(frozen=True)
class _Users:
    """One chunk of users; arrays are indexed by the user's position in the chunk."""

    first: int  # global index of the chunk's first user
    bias: np.ndarray
    a: _Interests
    b: _Interests

    def click_prob(
        self, cat: _Catalogue, users: np.ndarray, items: np.ndarray, alpha: np.ndarray
    ) -> np.ndarray:
        aff = (1.0 - alpha) * _affinity(self.a, users, items, cat) + alpha * _affinity(
            self.b, users, items, cat
        )
        logit = BIAS + self.bias[users] + AFFINITY * aff + QUALITY * cat.quality[items]
        return 1.0 / (1.0 + np.exp(-logit))

    def sample_items(
        self, rng: np.random.Generator, pools: _Pools, users: np.ndarray, slots: np.ndarray, alpha: np.ndarray
    ) -> np.ndarray:
        """One item per row: personalised (an interest of set A or B, by alpha) or popularity-weighted."""
        n = len(users)
        use_b = (rng.random(n) < alpha)[:, None]
        weight = np.where(use_b, self.b.weight[users], self.a.weight[users])
        cum = weight.cumsum(1)
        pick = (cum < (rng.random(n) * cum[:, -1])[:, None]).sum(1)
        sub = np.where(use_b[:, 0], self.b.sub[users, pick], self.a.sub[users, pick])
        lo, hi = pools.bounds[slots, sub], pools.bounds[slots, sub + 1]
        general = (rng.random(n) >= PERSONAL_SHARE) | (lo == hi)
        lo = np.where(general, pools.bounds[slots, 0], lo)
        hi = np.where(general, pools.bounds[slots, -1], hi)
        return pools.draw(lo, hi, rng.random(n))


@dataclass(frozen=True)
class _Impressions:
    """One chunk's impressions of a split, CSR: impression j's candidates are rows start[j]:start[j+1]."""

    user: np.ndarray  # position in the chunk
    time: np.ndarray
    start: np.ndarray
    item: np.ndarray
    prob: np.ndarray
    label: np.ndarray


def _histories(
    rng: np.random.Generator, cat: _Catalogue, pools: _Pools, users: _Users
) -> tuple[np.ndarray, np.ndarray]:
    """Pre-period clicks per user, oldest first, as CSR (start, items): picked ∝ p among a few draws each."""
    n = len(users.bias)
    length = np.minimum(
        MAX_HISTORY,
        rng.negative_binomial(
            HISTORY_DISPERSION, HISTORY_DISPERSION / (HISTORY_DISPERSION + HISTORY_MEAN), n
        ),
    )
    length[(users.first + np.arange(n)) % COLD_EVERY == 0] = 0
    owner = np.repeat(np.arange(n), HISTORY_OVERSAMPLE * length)
    zeros = np.zeros(len(owner))
    items = users.sample_items(rng, pools, owner, np.full(len(owner), PRE_SLOT), zeros)
    key = np.log(users.click_prob(cat, owner, items, zeros)) + rng.gumbel(size=len(owner))
    first = _first_occurrence(owner, items)
    owner, items, key = owner[first], items[first], key[first]
    order = np.lexsort((-key, owner))  # Gumbel-top-k: a weighted draw without replacement
    owner, items = owner[order], items[order]
    keep = _rank_within(owner) < length[owner]
    owner, items = owner[keep], items[keep]
    order = np.lexsort((items, owner))  # item numbers are in publish order
    return _csr_starts(owner[order], n), items[order]


def _impressions(
    rng: np.random.Generator,
    cat: _Catalogue,
    pools: _Pools,
    users: _Users,
    per_user: np.ndarray,
    period: tuple[int, int],
    mean_candidates: float,
) -> _Impressions:
    user = np.repeat(np.arange(len(per_user)), per_user)
    t = rng.integers(*period, len(user))
    extra_mean = mean_candidates - MIN_CANDIDATES
    size = MIN_CANDIDATES + rng.negative_binomial(
        CANDIDATE_DISPERSION, CANDIDATE_DISPERSION / (CANDIDATE_DISPERSION + extra_mean), len(user)
    )
    size = np.minimum(size, MAX_CANDIDATES)
    # draw with replacement, then keep the first `size` distinct items: oversample to make up for repeats
    imp = np.repeat(np.arange(len(user)), size + size // 2 + 3)
    alpha = (t - TRAIN_START) / (DEV_END - TRAIN_START)
    item = users.sample_items(rng, pools, user[imp], (t[imp] - TRAIN_START) // SLOT_SECONDS, alpha[imp])
    first = _first_occurrence(imp, item)
    imp, item = imp[first], item[first]
    keep = _rank_within(imp) < size[imp]
    imp, item = imp[keep], item[keep]
    # a tiny catalogue can leave too few distinct items: such an impression is dropped
    n_cand = np.bincount(imp, minlength=len(user))
    ok = n_cand >= MIN_CANDIDATES
    rows = ok[imp]
    renumber = np.cumsum(ok) - 1
    imp, item, user, t, alpha = renumber[imp[rows]], item[rows], user[ok], t[ok], alpha[ok]
    prob = users.click_prob(cat, user[imp], item, alpha[imp])
    return _Impressions(user, t, _csr_starts(imp, len(user)), item, prob, _labels(rng, imp, prob, len(user)))


def _labels(rng: np.random.Generator, imp: np.ndarray, prob: np.ndarray, n_imp: int) -> np.ndarray:
    """Bernoulli(p) labels with at least one click per impression (rejection, then one click forced ∝ p)."""
    label = rng.random(len(prob)) < prob
    for _ in range(MAX_LABEL_REDRAWS):
        none = np.bincount(imp, weights=label, minlength=n_imp) == 0
        if not none.any():
            return label
        redo = none[imp]
        label[redo] = rng.random(int(redo.sum())) < prob[redo]
    rows = np.flatnonzero((np.bincount(imp, weights=label, minlength=n_imp) == 0)[imp])
    key = np.log(prob[rows]) + rng.gumbel(size=len(rows))
    order = np.lexsort((-key, imp[rows]))
    label[rows[order[_rank_within(imp[rows][order]) == 0]]] = True
    return label


# ----------------------------------------------------------------------------------------- array helpers


def _first_occurrence(group: np.ndarray, item: np.ndarray) -> np.ndarray:
    """Mask of rows whose (group, item) did not occur in an earlier row."""
    order = np.lexsort((np.arange(len(item)), item, group))
    g, i = group[order], item[order]
    repeat = np.zeros(len(item), bool)
    repeat[order[1:]] = (g[1:] == g[:-1]) & (i[1:] == i[:-1])
    return ~repeat


def _rank_within(group: np.ndarray) -> np.ndarray:
    """0-based position of each row within its run of equal values of a sorted `group`."""
    idx = np.arange(len(group))
    new = np.ones(len(group), bool)
    new[1:] = group[1:] != group[:-1]
    return idx - np.maximum.accumulate(np.where(new, idx, 0))


def _csr_starts(group: np.ndarray, n: int) -> np.ndarray:
    """Row offsets of groups 0..n-1 in a sorted `group` array (n + 1 entries)."""
    return np.concatenate([[0], np.cumsum(np.bincount(group, minlength=n))])


# ------------------------------------------------------------------------------------------------ writing


def _format_time(t: int) -> str:
    """MIND's `11/15/2019 8:24:51 AM` (hour not zero-padded), UTC."""
    tm = time.gmtime(t)
    h = tm.tm_hour
    return (
        f"{tm.tm_mon:02d}/{tm.tm_mday:02d}/{tm.tm_year} {h % 12 or 12}:{tm.tm_min:02d}:{tm.tm_sec:02d} "
        f"{'PM' if h >= 12 else 'AM'}"
    )


def _date(t: int) -> str:
    return time.strftime("%m/%d/%Y", time.gmtime(t))


class _SplitWriter:
    """Streams one split's behaviors.tsv (and oracle.tsv), numbering impressions from 1; keeps its stats."""

    def __init__(self, files: ExitStack, folder: Path, ids: np.ndarray, oracle: bool):
        folder.mkdir()
        self.ids = ids
        self.tokens = (
            np.array([f"{i}-0" for i in ids], dtype=object),
            np.array([f"{i}-1" for i in ids], dtype=object),
        )
        self.behaviors = files.enter_context(_open_tsv(folder / "behaviors.tsv"))
        self.oracle = files.enter_context(_open_tsv(folder / "oracle.tsv")) if oracle else None
        self.used = np.zeros(len(ids), bool)
        self.next_id = 1
        self.users = self.candidates = self.clicks = self.empty_histories = 0
        # dev rows are kept (a few bytes each) to score the oracle and the popularity baseline at the end
        self.kept: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def write(
        self, rng: np.random.Generator, imps: _Impressions, histories: list[str], first_user: int
    ) -> None:
        n_imp = len(imps.user)
        size = np.diff(imps.start)
        order = rng.permutation(n_imp)  # interleave the chunk's users, as MIND's files do
        tokens = np.where(imps.label, self.tokens[1][imps.item], self.tokens[0][imps.item]).tolist()
        lines = []
        for k, j in enumerate(order.tolist()):
            a, b = imps.start[j], imps.start[j + 1]
            u = int(imps.user[j])
            lines.append(
                f"{self.next_id + k}\tU{first_user + u + 1}\t{_format_time(int(imps.time[j]))}\t{histories[u]}\t"
                f"{' '.join(tokens[a:b])}\n"
            )
        self.behaviors.write("".join(lines))
        if self.oracle is not None:
            # candidate rows of the impressions in written order
            before = np.cumsum(size[order]) - size[order]
            rows = np.repeat(imps.start[:-1][order] - before, size[order]) + np.arange(len(imps.item))
            imp_ids = np.repeat(np.arange(self.next_id, self.next_id + n_imp), size[order])
            self.oracle.write(
                "".join(
                    f"{i}\t{n}\t{p:.6f}\n"
                    for i, n, p in zip(
                        imp_ids.tolist(),
                        self.ids[imps.item[rows]].tolist(),
                        imps.prob[rows].tolist(),
                        strict=True,
                    )
                )
            )
            self.kept.append((imps.item[rows], imps.label[rows], imps.prob[rows], size[order]))
        self.next_id += n_imp
        self.used[imps.item] = True
        self.users += len(np.unique(imps.user))
        self.candidates += len(imps.item)
        self.clicks += int(imps.label.sum())
        self.empty_histories += sum(1 for u in imps.user.tolist() if not histories[u])

    def stats(self) -> dict:
        n_imp = self.next_id - 1
        return {
            "impressions": n_imp,
            "users": self.users,
            "news": int(self.used.sum()),
            "candidates": self.candidates,
            "clicks": self.clicks,
            "ctr": round(self.clicks / max(1, self.candidates), 4),
            "mean_candidates": round(self.candidates / max(1, n_imp), 2),
            "impressions_with_empty_history": self.empty_histories,
        }


def _generate(
    folder: Path, scale: str, sizes: DemoScale, seed: int, progress: bool, fresh: float = 0.0
) -> dict:
    # a fourth stream for the fresh-word draws: the first three (and so fresh=0 data) are as before
    catalogue_seed, text_seed, users_seed, fresh_seed = np.random.SeedSequence(seed).spawn(4)
    cat = _catalogue(np.random.default_rng(catalogue_seed), sizes.n_news)
    pools = _Pools(cat)
    n_chunks = -(-sizes.n_users // CHUNK_USERS)
    train_clicks = np.zeros(sizes.n_news, np.int64)
    with ExitStack() as files:
        train = _SplitWriter(files, folder / "train", cat.ids, oracle=False)
        dev = _SplitWriter(files, folder / "dev", cat.ids, oracle=True)
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
        _SEEN_WORDS if fresh else _CONCEPT_SYNONYMS,
        _FRESH_WORDS if fresh else _CONCEPT_SYNONYMS,
    )
    _write_news(folder, cat, np.random.default_rng(text_seed), (train.used, dev.used), progress, new, words)

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
            "history": f"{_date(TRAIN_START - HISTORY_DAYS * DAY)}-{_date(TRAIN_START - DAY)}",
            "train": f"{_date(TRAIN_START)}-{_date(DEV_START - DAY)}",
            "dev": f"{_date(DEV_START)}-{_date(DEV_END - DAY)}",
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
    cat: _Catalogue,
    pools: _Pools,
    sizes: DemoScale,
    first: int,
    n: int,
    train: _SplitWriter,
    dev: _SplitWriter,
    train_clicks: np.ndarray,
) -> None:
    """Simulate users first..first+n-1 (histories, train and dev impressions) and write their lines."""
    a = _interests(rng, cat.sub_popularity, n)
    users = _Users(first, rng.normal(0.0, USER_BIAS_SD, n), a, _drift(rng, a, cat.sub_popularity))
    activity = rng.gamma(ACTIVITY_SHAPE, 1.0 / ACTIVITY_SHAPE, n)
    n_train = rng.poisson(activity * sizes.train_impressions / sizes.n_users)
    n_dev = rng.poisson(activity * sizes.dev_impressions / sizes.n_users)

    hist_start, hist_items = _histories(rng, cat, pools, users)
    hist_ids = cat.ids[hist_items].tolist()
    pre = [hist_ids[hist_start[u] : hist_start[u + 1]] for u in range(n)]

    tr = _impressions(rng, cat, pools, users, n_train, (TRAIN_START, DEV_START), sizes.mean_candidates)
    train.write(rng, tr, [" ".join(h) for h in pre], first)
    train.used[hist_items[np.repeat(n_train > 0, np.diff(hist_start))]] = True
    train_clicks += np.bincount(tr.item[tr.label], minlength=len(train_clicks))

    # dev histories: the pre-period snapshot plus train-period clicks, in time order, without repeats
    clicked = np.flatnonzero(tr.label)
    click_imp = np.searchsorted(tr.start, clicked, side="right") - 1
    click_user = tr.user[click_imp]
    order = np.lexsort((clicked, tr.time[click_imp], click_user))
    click_start = _csr_starts(click_user[order], n)
    click_ids = cat.ids[tr.item[clicked[order]]].tolist()
    dev_hist = [
        " ".join(dict.fromkeys(pre[u] + click_ids[click_start[u] : click_start[u + 1]])) if n_dev[u] else ""
        for u in range(n)
    ]
    dv = _impressions(rng, cat, pools, users, n_dev, (DEV_START, DEV_END), sizes.mean_candidates)
    dev.write(rng, dv, dev_hist, first)
    dev_users = n_dev > 0
    dev.used[hist_items[np.repeat(dev_users, np.diff(hist_start))]] = True
    dev.used[tr.item[clicked[dev_users[click_user]]]] = True


def _write_news(
    folder: Path,
    cat: _Catalogue,
    rng: np.random.Generator,
    used: tuple[np.ndarray, ...],
    progress: bool,
    fresh: np.ndarray,
    words: tuple[list[tuple[str, ...]], list[tuple[str, ...]]],
) -> None:
    """news.tsv of each split in catalogue order; an item's text depends only on the seed and its number.
    `words`: the synonyms of every concept for most items and for the `fresh` ones."""
    block = 10_000
    with _open_tsv(folder / "train" / "news.tsv") as train, _open_tsv(folder / "dev" / "news.tsv") as dev:
        files = (train, dev)
        for lo in tqdm(range(0, len(cat.sub), block), desc="demo news", disable=not progress):
            draws = rng.random((min(block, len(cat.sub) - lo), _DRAWS_PER_ITEM))
            lines: list[list[str]] = [[] for _ in files]
            for k, row in enumerate(draws):
                i = lo + k
                wanted = [u[i] for u in used]
                if not any(wanted):
                    continue
                category, sub = _SUBCATEGORIES[cat.sub[i]]
                title, abstract = _news_text(
                    _Draws(row),
                    category,
                    int(cat.sub[i]),
                    int(cat.concept[i]),
                    int(cat.tone[i]),
                    words[int(fresh[i])],
                )
                nid = cat.ids[i]
                url = f"https://example.org/demo/{nid}.html"
                line = f"{nid}\t{category}\t{sub}\t{title}\t{abstract}\t{url}\t[]\t[]\n"
                for w, ls in zip(wanted, lines, strict=True):
                    if w:
                        ls.append(line)
            for f, ls in zip(files, lines, strict=True):
                f.write("".join(ls))


def _open_tsv(path: Path) -> TextIO:
    # newline="\n": MIND's line ends on every platform
    return open(path, "w", encoding="utf-8", newline="\n")


# -------------------------------------------------------------------------------------------------- text

# the most one item can use: four title tries of up to 8 draws, then 2 + 2 * 7 for the abstract
_DRAWS_PER_ITEM = 48
_SLOT = re.compile(r"\{(\w+)\}")


class _Draws:
    """Hands out one item's pre-drawn uniforms in order, so text generation is per-item deterministic."""

    def __init__(self, row: np.ndarray):
        self.u = row.tolist()
        self.next = 0

    def uniform(self) -> float:
        u = self.u[self.next]
        self.next += 1
        return u

    def pick(self, options: tuple[str, ...] | list[str]) -> str:
        return options[int(self.uniform() * len(options))]


def _news_text(
    draw: _Draws, category: str, sub: int, concept: int, tone: int, synonyms: list[tuple[str, ...]]
) -> tuple[str, str]:
    others = [
        c
        for c in range(_SUB_FIRST_CONCEPT[sub], _SUB_FIRST_CONCEPT[sub] + _SUB_N_CONCEPTS[sub])
        if c != concept
    ]
    fillers: dict[str, Callable[[], str]] = {
        "c": lambda: draw.pick(synonyms[concept]),
        "c2": lambda: draw.pick(synonyms[others[int(draw.uniform() * len(others))]]),
        "who": lambda: draw.pick(_AUDIENCES[category]),
        "person": lambda: f"{draw.pick(FIRST_NAMES)} {draw.pick(LAST_NAMES)}",
        "place": lambda: draw.pick(PLACES),
        "num": lambda: str(3 + int(draw.uniform() * 23)),
    }

    def fill(template: str) -> str:
        return _capitalise(_SLOT.sub(lambda m: fillers[m.group(1)](), template))

    # retry templates until the title has a MIND-like length; four tries suffice in practice
    for _ in range(4):
        title = draw.pick(TONE_PREFIXES[tone]) + fill(draw.pick(TITLE_TEMPLATES))
        if TITLE_WORDS[0] <= len(title.split()) <= TITLE_WORDS[1]:
            break
    if draw.uniform() < EMPTY_ABSTRACT_SHARE:
        return title, ""
    n_sentences = 1 + (draw.uniform() < 0.5)
    return title, " ".join(fill(draw.pick(ABSTRACT_SENTENCES)) for _ in range(n_sentences))


def _capitalise(text: str) -> str:
    # leave brand-style words ("iPhones", "eBay") alone
    if len(text) > 1 and text[1].isupper():
        return text
    return text[:1].upper() + text[1:]
