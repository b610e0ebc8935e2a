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


@pytest.fixture(scope="session")
def dummy_dir(tmp_path_factory):
    """Tiny random components of every architecture, saved once per session (``<dir>/<name>``)."""
    from riveg_hf.testing import save_dummy_components

    root = tmp_path_factory.mktemp("dummy")
    paths = save_dummy_components(root / "a", expander=True, captioner=True)
    paths.update(
        {
            f"{k}_alt": v
            for k, v in save_dummy_components(
                root / "b", grounder="owlv2", entailment="clip", segmenter="sam"
            ).items()
            if k in ("grounder", "entailment", "segmenter")
        }
    )
    return paths


@pytest.fixture(scope="session")
def photo():
    """A real photo (NASA astronaut Eileen Collins, scikit-image), downscaled to keep tests fast."""
    from PIL import Image

    from .helpers import skimage_photo

    return Image.open(skimage_photo("astronaut.png")).convert("RGB").resize((128, 128))
