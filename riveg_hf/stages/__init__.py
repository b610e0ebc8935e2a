"""RiVEG's five roles, each one base class (:class:`~riveg_hf.stages.base.Stage` underneath), with one module per
model family where families differ (:mod:`riveg_hf.stages.grounders`, :mod:`riveg_hf.stages.segmenters`,
:mod:`riveg_hf.stages.entailers`, :mod:`riveg_hf.stages.readers`), chosen from the role's
:class:`~riveg_hf.stages.registry.FamilyRegistry` by the checkpoint's model type (the joint reader: by name).
Every family declares its options once (:class:`~riveg_hf.stages.registry.Option`), validated alike by its
constructor and :meth:`Stage.configure`, and a tiny random model of each type it claims (:meth:`Stage.tiny`).

Data flow: text + image -> :class:`Recognizer` (entities) -> :class:`Expander` (descriptions,
with the optional :class:`Captioner`) -> :class:`Entailment` (visible?) -> :class:`Grounder`
(box) -> :class:`Segmenter` (mask).
"""

from .base import ComponentLoadError, Stage
from .entailment import Entailment, calibrate_threshold
from .expander import Captioner, Expander, ExpansionRequest, clean_description, template_description
from .grounder import Grounder, Localization, LocateRequest, Locator
from .reader import JointReader, Reading, ReadRequest
from .recognizer import Recognizer, WordSpan
from .registry import FamilyRegistry, Option
from .segmenter import Segmenter

#: component name -> stage class, in data-flow order
STAGES: dict[str, type[Stage]] = {
    "recognizer": Recognizer,
    "captioner": Captioner,
    "expander": Expander,
    "entailment": Entailment,
    "grounder": Grounder,
    "segmenter": Segmenter,
    "reader": JointReader,  # reads entities, types and boxes in one answer: replaces recognizer ... grounder
}

__all__ = [
    "STAGES",
    "Captioner",
    "ComponentLoadError",
    "Entailment",
    "Expander",
    "ExpansionRequest",
    "FamilyRegistry",
    "Grounder",
    "JointReader",
    "Localization",
    "LocateRequest",
    "Locator",
    "Option",
    "ReadRequest",
    "Reading",
    "Recognizer",
    "Segmenter",
    "Stage",
    "WordSpan",
    "calibrate_threshold",
    "clean_description",
    "template_description",
]
