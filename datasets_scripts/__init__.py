"""Dataset builders: raw releases -> parquet shards + dataset card (``riveg data build``).

Each builder writes a folder that ``datasets.load_dataset(folder, config)`` reads offline and
that ``riveg data push`` uploads. Builder code is never copied into the output folder.
"""

from __future__ import annotations

from . import twitter_fmnerg, twitter_gmner, twitter_mner, twitter_smner

BUILDERS = {
    "twitter-gmner": twitter_gmner.build,
    "twitter-smner": twitter_smner.build,
    "twitter-mner": twitter_mner.build,
    "twitter-fmnerg": twitter_fmnerg.build,
}

__all__ = ["BUILDERS", "twitter_fmnerg", "twitter_gmner", "twitter_mner", "twitter_smner"]
