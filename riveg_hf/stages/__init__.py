"""RiVEG's five stages, each a small module behind one protocol (:class:`~riveg_hf.stages.base.Stage`).

Data flow: text + image -> :class:`Recognizer` (entities) -> :class:`Expander` (descriptions,
with the optional :class:`Captioner`) -> :class:`Entailment` (visible?) -> :class:`Grounder`
(box) -> :class:`Segmenter` (mask).
"""

from .base import ComponentLoadError, Stage
from .entailment import Entailment, calibrate_threshold
from .expander import Captioner, Expander, ExpansionRequest, clean_description, template_description
from .grounder import Grounder
from .recognizer import Recognizer, WordSpan
from .segmenter import Segmenter

#: component name -> stage class, in data-flow order
STAGES: dict[str, type[Stage]] = {
    "recognizer": Recognizer,
    "captioner": Captioner,
    "expander": Expander,
    "entailment": Entailment,
    "grounder": Grounder,
    "segmenter": Segmenter,
}

__all__ = [
    "STAGES",
    "Captioner",
    "ComponentLoadError",
    "Entailment",
    "Expander",
    "ExpansionRequest",
    "Grounder",
    "Recognizer",
    "Segmenter",
    "Stage",
    "WordSpan",
    "calibrate_threshold",
    "clean_description",
    "template_description",
]
