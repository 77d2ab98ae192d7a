"""The demo news vocabulary: topics and their concepts, audiences, templates, lead words, names, places.

A category holds subcategories, a subcategory concepts, and a concept several synonyms (surface words of one
latent topic: see text.py for how they are drawn). Concepts and subcategories are numbered in TOPICS order:
the indices at the end are what the catalogue and the click model use.

Fresh words (`fresh` > 0, off by default): real news brings words the training clicks never showed, which a
pretrained language model knows and a word table learned from clicks cannot. Each concept's synonyms split in
two (SEEN_WORDS, FRESH_WORDS): the first half (rounded up) are the only ones written in items published
before the dev day; the second half only in a share `fresh` of the items published on the dev day (the
others keep the first half). Nothing else changes (same items, users, clicks and oracle), so a word model
loses exactly the concept words of those new items.
"""

from __future__ import annotations

import numpy as np

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
# lead words by tone, from the dullest items to the most appealing (see catalogue.TONE_NOISE)
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

# Vocabulary indices: subcategories and concepts numbered in TOPICS order.
CATEGORIES = list(TOPICS)
SUBCATEGORIES = [(cat, sub) for cat in TOPICS for sub in TOPICS[cat]]
SUB_CAT = np.array([CATEGORIES.index(cat) for cat, _ in SUBCATEGORIES])
SUB_N_CONCEPTS = np.array([len(TOPICS[cat][sub]) for cat, sub in SUBCATEGORIES])
SUB_FIRST_CONCEPT = np.concatenate([[0], np.cumsum(SUB_N_CONCEPTS)[:-1]])
CONCEPT_SYNONYMS = [tuple(c.split("|")) for cat, sub in SUBCATEGORIES for c in TOPICS[cat][sub]]
# with fresh words: the first half of each concept's synonyms (rounded up) before the dev day, the rest after
SEEN_WORDS = [s[: -(-len(s) // 2)] for s in CONCEPT_SYNONYMS]
FRESH_WORDS = [s[-(-len(s) // 2) :] for s in CONCEPT_SYNONYMS]
AUDIENCE_WORDS = {cat: tuple(a.split("|")) for cat, a in AUDIENCES.items()}
