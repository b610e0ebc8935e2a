"""Twitter-FMNERG (Wang et al., ACM MM 2023, "Fine-Grained Multimodal Named Entity Recognition and Grounding";
repository NUSTM/FMNERG): the Twitter-GMNER v2 tweets with two tag columns, ``token<TAB>coarse<TAB>fine``
(8 coarse types, 51 fine types, lowercase), in ``Twitter10000v2/txt_fine/{train,dev,test}.txt``; the boxes are
Twitter-GMNER's XML. The type tree is FMNERG's ``coarse_fine_tree`` (``data_utils.py``).
"""

from __future__ import annotations

__all__ = ["COARSE_TYPES", "FINE_TO_COARSE", "FINE_TYPES", "TREE"]

#: Twitter-FMNERG's type tree: each coarse type -> its fine types (51 in all)
TREE: dict[str, tuple[str, ...]] = {
    "location": ("city", "country", "state", "continent", "location_other", "park", "road"),
    "building": ("building_other", "cultural_place", "entertainment_place", "sports_facility"),
    "organization": ("company", "educational_institution", "band", "government_agency", "news_agency",
                     "organization_other", "political_party", "social_organization", "sports_league",
                     "sports_team"),
    "person": ("politician", "musician", "actor", "artist", "athlete", "author", "businessman", "character",
               "coach", "director", "intellectual", "journalist", "person_other"),
    "other": ("animal", "award", "medical_thing", "website", "ordinance"),
    "art": ("art_other", "film_and_television_works", "magazine", "music", "written_work"),
    "event": ("event_other", "festival", "sports_event"),
    "product": ("brand_name_products", "game", "product_other", "software"),
}  # fmt: skip
#: the 8 coarse types, in FMNERG's order of its paper (person, organization, location, building, event, product,
#: art, other)
COARSE_TYPES = ("person", "organization", "location", "building", "event", "product", "art", "other")
#: the 51 fine types, grouped by coarse type in :data:`COARSE_TYPES` order
FINE_TYPES = tuple(f for c in COARSE_TYPES for f in TREE[c])
#: fine type -> its coarse type (``riveg evaluate --level coarse`` maps with it)
FINE_TO_COARSE = {f: c for c, fs in TREE.items() for f in fs}
assert len(FINE_TYPES) == 51
