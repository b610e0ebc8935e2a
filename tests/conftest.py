import pytest

from .helpers import GET_DATA, find_shared_data, skip_or_fail


@pytest.fixture(scope="session")
def shared_data():
    """The real releases (see ``helpers.find_shared_data``). Without them the real-data tests are skipped
    with one reason that names the command getting them; under CI (``CI=true``) they fail instead."""
    path = find_shared_data()
    if path is None:
        skip_or_fail(GET_DATA)
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
