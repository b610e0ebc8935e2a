import os

import pytest

from .helpers import find_shared_data


@pytest.fixture(scope="session")
def shared_data():
    """The real releases in ../shared/data. Missing data fails the test (set RIVEG_DATA to point at it);
    RIVEG_SKIP_REAL_DATA=1 turns that into an explicit skip for machines without the data."""
    path = find_shared_data()
    if path is None or not (path / "twitter-gmner" / "v2.0").is_dir():
        if os.environ.get("RIVEG_SKIP_REAL_DATA") == "1":
            pytest.skip("RIVEG_SKIP_REAL_DATA=1 and the real data is not present")
        pytest.fail(
            "the real data (shared/data/twitter-gmner/v2.0 ...) was not found: set RIVEG_DATA=/path/to/shared/data"
        )
    return path
