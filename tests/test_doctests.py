"""The ``>>>`` examples in the docstrings of the pure modules run and hold."""

import doctest

import pytest

import riveg_hf.boxes
import riveg_hf.data.align
import riveg_hf.data.conll
import riveg_hf.data.report
import riveg_hf.masks
import riveg_hf.metrics.core
import riveg_hf.net
import riveg_hf.serving.client
import riveg_hf.serving.images
import riveg_hf.stages.expander
import riveg_hf.stages.grounders.florence2
import riveg_hf.stages.vlm_answers
import riveg_hf.stages.vlm_grounding
import riveg_hf.text
import riveg_hf.training.vlm


@pytest.mark.parametrize(
    "module",
    [
        riveg_hf.boxes,
        riveg_hf.masks,
        riveg_hf.text,
        riveg_hf.data.align,
        riveg_hf.data.conll,
        riveg_hf.data.report,
        riveg_hf.metrics.core,
        riveg_hf.net,
        riveg_hf.stages.expander,
        riveg_hf.stages.vlm_answers,
        riveg_hf.stages.grounders.florence2,
        riveg_hf.serving.client,
        riveg_hf.serving.images,
        riveg_hf.training.vlm,
        riveg_hf.stages.vlm_grounding,
    ],
    ids=lambda m: m.__name__,
)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
