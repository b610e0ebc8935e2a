"""The Gradio demo: image + tweet in; highlighted entities, the image with boxes / masks, and the JSON out.

    riveg demo [--model DIR_OR_ID] [--port 7860] [--host 127.0.0.1]

Custom pipeline tags get no widget on the Hub, so this app (also usable as a Space, see ``app.py``)
is where people try a RiVEG checkpoint. Each entity keeps one colour in the text and on the image.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .masks import decode_rle
from .visualize import entity_colors, highlight_spans, label_of

__all__ = ["EXAMPLES", "build_demo", "predict_for_demo"]

#: tweets we wrote for the public-domain photos that ship with scikit-image
EXAMPLES = [
    (
        "astronaut.png",
        "Astronaut Eileen Collins poses for her official NASA portrait before commanding Columbia",
    ),
    ("rocket.jpg", "Liftoff! SpaceX launches another Falcon 9 from Cape Canaveral tonight #space"),
    ("coffee.png", "Monday fuel: a cappuccino at Blue Bottle Coffee in San Francisco"),
    ("chelsea.png", "Chelsea the cat refuses to leave my keyboard again @CatsOfTwitter"),
    ("motorcycle_left.png", "Road trip across Oregon on the new Ducati this weekend, thanks @DucatiUSA"),
]


def _example_rows() -> list[list[Any]]:
    try:
        import skimage
    except ImportError:
        return []
    data = Path(skimage.__file__).parent / "data"
    return [[str(data / name), text] for name, text in EXAMPLES if (data / name).is_file()]


def predict_for_demo(pipe, image, text: str, box_threshold: float, entailment_threshold: float):
    """One demo call -> (highlighted text, annotated image, JSON), with one colour per entity."""
    if not text or not text.strip():
        return [], None, [], {}
    kwargs: dict[str, Any] = {}
    if pipe._locator() is not None:  # a joint reader writes its own boxes: no box score to threshold
        kwargs["box_threshold"] = float(box_threshold)
    if "entailment" in pipe.stages:
        kwargs["entailment_threshold"] = float(entailment_threshold)
    entities = pipe({"text": text, "image": image}, **kwargs)
    colors = entity_colors(len(entities))
    labels = [label_of(e) for e in entities]
    # HighlightedText colours by label; the same label gets the same colour on the image
    spans = highlight_spans(text, entities)
    annotations = []
    if image is not None:
        h, w = np.asarray(image).shape[:2]
        for e, lab in zip(entities, labels):
            if e.get("mask") is not None:
                annotations.append((decode_rle(e["mask"]).astype(np.float32), lab))
            elif e.get("box") is not None:
                b = e["box"]
                box = (int(b["xmin"]), int(b["ymin"]), int(min(b["xmax"], w)), int(min(b["ymax"], h)))
                annotations.append((box, lab))
    annotated = (image, annotations) if image is not None else None
    return (
        spans,
        annotated,
        entities,
        {lab: "#{:02x}{:02x}{:02x}".format(*c) for lab, c in zip(labels, colors)},
    )


def build_demo(pipe, *, title: str = "RiVEG: grounded multimodal NER"):
    """The Gradio Blocks app around a loaded pipeline."""
    import gradio as gr

    with gr.Blocks(title=title) as demo:
        gr.Markdown(
            f"# {title}\nFinds the named entities of a tweet, their type (PER, LOC, ORG, OTHER), whether the image "
            "shows them, and where (box; mask with a segmenter). Boxes are in original-image pixels."
        )
        with gr.Row():
            with gr.Column():
                image = gr.Image(type="pil", label="Image", elem_id="riveg-image")
                text = gr.Textbox(label="Tweet", lines=3, elem_id="riveg-text")
                locator = pipe._locator()
                box_threshold = gr.Slider(
                    0.0,
                    1.0,
                    value=locator.box_threshold if locator is not None else 0.3,
                    step=0.01,
                    label="box threshold",
                    visible=locator is not None,
                )
                ent = pipe.stages.get("entailment")
                entailment_threshold = gr.Slider(
                    0.0,
                    1.0,
                    value=ent.threshold if ent else 0.5,
                    step=0.01,
                    label="entailment threshold",
                    visible=ent is not None,
                )
                run = gr.Button("Find entities", variant="primary", elem_id="riveg-run")
            with gr.Column():
                highlighted = gr.HighlightedText(
                    label="Entities", show_legend=True, elem_id="riveg-highlighted"
                )
                annotated = gr.AnnotatedImage(label="Regions", elem_id="riveg-annotated")
                as_json = gr.JSON(label="JSON", elem_id="riveg-json")

        def _run(img, txt, bt, et):
            spans, ann, ents, cmap = predict_for_demo(pipe, img, txt, bt, et)
            return (
                gr.HighlightedText(value=spans, color_map=cmap),
                gr.AnnotatedImage(value=ann, color_map=cmap),
                ents,
            )

        run.click(
            _run,
            [image, text, box_threshold, entailment_threshold],
            [highlighted, annotated, as_json],
            api_name="predict",
        )
        rows = _example_rows()
        if rows:
            gr.Examples(rows, [image, text], label="Examples (scikit-image photos, public domain)")
    return demo


def launch(
    model: str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    task: str = "grounded-mner",
    local_files_only: bool = False,
    trust_endpoints: bool = False,
    **launch_kwargs: Any,
):
    """Load the pipeline and serve the demo (binds 127.0.0.1 unless ``host`` says otherwise)."""
    from . import RiVEGModel, RiVEGPipeline
    from .pipeline import default_model_path

    location = model or os.environ.get("RIVEG_MODEL") or str(default_model_path(task))
    pipe = RiVEGPipeline(
        model=RiVEGModel.from_pretrained(
            location, local_files_only=local_files_only, trust_endpoints=trust_endpoints
        ),
        task=task,
        trust_endpoints=trust_endpoints,
    )
    demo = build_demo(pipe)
    demo.launch(server_name=host, server_port=port, **launch_kwargs)
    return demo
