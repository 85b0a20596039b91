"""The generator's fixed design: time units, vocabularies, latent-structure constants, event codes.

These are part of the specification of the synthetic world, not tunables (those live in
``params.yaml`` under ``datagen``); changing one changes every generated drop.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from components.core.schema import EVENT_TYPES

MS_PER_S = 1_000
MS_PER_H = 3_600_000
MS_PER_DAY = 86_400_000

#: Layout of ``truth.parquet`` (long format: one row per user and category, sorted by both).
TRUTH_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("category", pa.string(), nullable=False),
        pa.field("interest", pa.float64(), nullable=False),
    ]
)

# --- vocabularies -------------------------------------------------------------------------------

DEVICES = ("ios", "android", "web")
DEVICE_P = (0.45, 0.42, 0.13)
DESKTOP_OS = ("windows", "macos", "linux")
DESKTOP_OS_P = (0.6, 0.3, 0.1)
#: OS codes: 0 ios, 1 android, 2 + desktop OS (web sessions).
OS_NAMES = ("ios", "android", *DESKTOP_OS)
NETWORKS = ("wifi", "5g", "4g", "3g")
NETWORK_P = (0.55, 0.15, 0.22, 0.08)
SHARE_PLATFORMS = ("whatsapp", "instagram", "messenger", "sms", "copy_link", "x")
SHARE_P = (0.35, 0.2, 0.15, 0.1, 0.15, 0.05)
REPORT_REASONS = ("spam", "inappropriate", "misleading", "violence", "copyright", "other")
COMMENTS = (
    "love this",
    "so funny",
    "wow",
    "need more of this",
    "this is the best",
    "tutorial please",
    "who else is watching at night",
    "underrated",
    "came back to watch again",
    "not bad",
    "what song is this",
    "first",
    "this made my day",
    "how did you do that",
    "saving this",
)
AGE_GROUPS = ("13-17", "18-24", "25-34", "35-44", "45-54", "55+")
AGE_P = (0.12, 0.33, 0.27, 0.15, 0.08, 0.05)
LOCATIONS = ("US", "GB", "DE", "FR", "BR", "IN", "JP", "MX", "ID", "NG")
LOCATION_LANG = ("en", "en", "de", "fr", "pt", "hi", "ja", "es", "id", "en")
LOCATION_P = (0.25, 0.08, 0.07, 0.06, 0.12, 0.12, 0.06, 0.09, 0.1, 0.05)
GENERAL_HASHTAGS = ("#fyp", "#foryou", "#viral", "#trending", "#new")
GENERIC_SUFFIXES = (
    "vibes", "daily", "tips", "life", "clips", "fun", "pro", "hacks", "world", "moments",
)  # fmt: skip
CATEGORY_WORDS: dict[str, tuple[str, ...]] = {
    "dance": ("dance", "choreo", "moves", "trend", "hiphop", "kpop", "shuffle", "duet", "routine", "freestyle"),
    "comedy": ("funny", "prank", "skit", "joke", "meme", "parody", "standup", "lol", "roast", "bloopers"),
    "food": ("recipe", "cooking", "foodie", "baking", "streetfood", "mukbang", "vegan", "dessert", "pasta", "spicy"),
    "pets": ("dog", "cat", "puppy", "kitten", "pets", "cute", "rescue", "training", "parrot", "hamster"),
    "fitness": ("workout", "gym", "yoga", "cardio", "abs", "running", "stretch", "hiit", "gains", "pilates"),
    "beauty": ("makeup", "skincare", "nails", "hair", "glowup", "lipstick", "contour", "grwm", "lashes", "routine"),
    "fashion": ("outfit", "ootd", "style", "thrift", "haul", "streetwear", "sneakers", "vintage", "lookbook", "fit"),
    "travel": ("travel", "beach", "roadtrip", "hiking", "wanderlust", "city", "hotel", "island", "backpacking", "sunset"),
    "gaming": ("gaming", "minecraft", "speedrun", "esports", "gameplay", "clutch", "retro", "console", "pc", "boss"),
    "music": ("music", "cover", "singing", "guitar", "piano", "rap", "remix", "concert", "beat", "acoustic"),
    "sports": ("football", "basketball", "soccer", "skate", "highlights", "goal", "dunk", "tennis", "boxing", "surf"),
    "diy": ("diy", "crafts", "woodworking", "hack", "upcycle", "build", "repair", "garden", "decor", "tools"),
    "education": ("learn", "science", "history", "math", "facts", "language", "study", "explained", "physics", "tips"),
    "tech": ("tech", "gadgets", "phone", "unboxing", "coding", "ai", "setup", "review", "robot", "laptop"),
    "art": ("art", "drawing", "painting", "sketch", "digitalart", "pottery", "calligraphy", "timelapse", "anime", "portrait"),
    "cars": ("cars", "supercar", "drift", "tuning", "motorcycle", "ev", "racing", "engine", "restoration", "offroad"),
    "nature": ("nature", "wildlife", "ocean", "forest", "birds", "mountains", "flowers", "storm", "camping", "sunrise"),
    "family": ("family", "kids", "baby", "parenting", "wedding", "mom", "dad", "siblings", "grandma", "toddler"),
    "asmr": ("asmr", "satisfying", "slime", "relaxing", "whisper", "soap", "cutting", "tapping", "crunchy", "calm"),
    "news": ("news", "politics", "explainer", "breaking", "economy", "climate", "debate", "interview", "world", "update"),
}  # fmt: skip
VOCAB_SIZE = 10

#: Relative session-start intensity per UTC hour of day (evening peak, night trough).
HOURLY = np.array(
    [0.75, 0.5, 0.32, 0.22, 0.18, 0.2, 0.32, 0.5, 0.6, 0.62, 0.65, 0.72,
     0.85, 0.82, 0.78, 0.8, 0.9, 1.05, 1.25, 1.45, 1.65, 1.7, 1.45, 1.05]
)  # fmt: skip
WEEKEND_LIFT = 1.15

# --- latent-structure constants (the generator's design, not tunables of the specification) -----

N_FAV = 3  # favourite creators per user
PRE_PERIOD_SHARE = 0.6  # share of items uploaded before ``start``
PRE_PERIOD_DAYS = 60
FOLLOWING_SHARE = 0.1  # of non-exploration impressions: from a favourite creator
SESSION_MEAN = 12  # planned impressions per session (before heavy users stretch it)
SESSION_MAX = 200  # impressions per session
SESSION_WINDOW_MS = 2 * MS_PER_H  # impressions beyond this offset in a session are dropped
SESSION_SPACING_MS = (
    3 * MS_PER_H
)  # min start-to-start gap of a user's sessions (> window + 30 min)
PLAN_MARGIN = 1.1  # planned impressions per requested event (>= 1 event per impression)
MAX_BUCKET_CELLS = 4_000_000  # (time bucket x item) cells of the popularity table
EMB_DIM = 16
FAR_FUTURE_MS = 50 * 365 * MS_PER_DAY  # shift of the "timestamp in the far future" bad events

T_VIEW, T_COMPLETE, T_REPLAY, T_SKIP = (EVENT_TYPES.index(t) for t in ("view", "complete_view", "replay", "skip"))  # fmt: skip
T_LIKE, T_SHARE, T_COMMENT, T_SAVE = (EVENT_TYPES.index(t) for t in ("like", "share", "comment", "save"))  # fmt: skip
T_FOLLOW, T_UNFOLLOW, T_HIDE, T_REPORT = (EVENT_TYPES.index(t) for t in ("follow", "unfollow", "hide", "report"))  # fmt: skip
T_UPLOAD = EVENT_TYPES.index("content_upload")
T_ZAP = len(EVENT_TYPES)  # code of the invalid event type
TYPE_NAMES = (*EVENT_TYPES, "zap")
#: The ways a deliberately invalid event is broken (one per bad row).
BAD_KINDS = (
    "negative_watch",
    "future_timestamp",
    "duplicate_id",
    "unknown_type",
    "unknown_content",
)

EVENT_FIELDS = ("unit", "ts", "user", "item", "etype", "watch", "aux", "creator", "device", "os", "net")  # fmt: skip
Events = dict[str, np.ndarray]  # numeric event columns, see EVENT_FIELDS
