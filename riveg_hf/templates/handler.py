"""Inference Endpoints handler for a RiVEG composite checkpoint (written into the repo by ``riveg push``).

Request:  {"inputs": {"text": "...", "image": "<base64>" | "https://..." | null}, "parameters": {...}}
Response: a list of entities (the pipeline's output, always JSON), or {"error": "...", "status": 4xx}.
Parameters: box_threshold, entailment_threshold (numbers in 0..1, not booleans), mask_format ("rle" | "none"),
use_descriptions (bool), max_entities_per_image (positive int).

Image URLs are refused unless the endpoint sets RIVEG_ALLOW_URL_IMAGES=1; then only public addresses are
fetched, on every redirect hop, with a short timeout and a byte cap, and every failed fetch gives the same
error (riveg_hf.net). Boxes are in pixels of the image as displayed (EXIF orientation applied).

No response carries a credential: every string of a response has the tokens this endpoint holds (its served
stages' tokens, RIVEG_ENDPOINT_TOKEN, HF_TOKEN) redacted, and its messages (errors, "grounding" notes) also
anything shaped like one (riveg_hf.serving.client.redact). An unexpected failure is a 500 whose message names
its type and says nothing more than the redacted text.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from typing import Any

MAX_TEXT_CHARS = 10_000
MAX_IMAGE_BYTES = 20 * 1024 * 1024  # decoded image payload
MAX_IMAGE_PIXELS = 40_000_000
#: the call options a request may set (validated by riveg_hf.options, the pipeline's own validator)
PARAMETERS = (
    "box_threshold",
    "entailment_threshold",
    "mask_format",
    "use_descriptions",
    "max_entities_per_image",
)
MASK_FORMATS = ("rle", "none")  # "array" would not be JSON
#: the keys of a response whose text is a message (an error, a note), redacted of anything shaped like a token
MESSAGE_KEYS = ("error", "grounding", "description_rejected")


def _allow_urls() -> bool:
    return os.environ.get("RIVEG_ALLOW_URL_IMAGES", "").strip().lower() in ("1", "true", "yes")


class RequestError(ValueError):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class EndpointHandler:
    def __init__(self, path: str = ""):
        from transformers import pipeline

        import riveg_hf  # noqa: F401  (registers the tasks: no trust_remote_code)

        with open(os.path.join(path, "config.json"), encoding="utf-8") as fh:
            task = json.load(fh).get("task", "grounded-mner")
        self.pipe = pipeline(task, model=path)

    def _secrets(self) -> list[str]:
        """Every credential this endpoint holds: its served stages' tokens and the token variables."""
        found = [os.environ.get(v) for v in ("RIVEG_ENDPOINT_TOKEN", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")]
        for stage in getattr(self.pipe, "stages", {}).values():
            for client in stage.clients() if hasattr(stage, "clients") else ():
                found.append(getattr(client, "_token", None))
        return [t for t in found if isinstance(t, str) and t.strip()]

    def _redacted(self, value: Any, secrets: list[str], message: bool = False) -> Any:
        """Every string without the secrets; a message (an error, a note) also without what looks like one."""
        from riveg_hf.serving.client import redact

        if isinstance(value, str):
            return redact(value, secrets, patterns=message)
        if isinstance(value, list):
            return [self._redacted(v, secrets, message) for v in value]
        if isinstance(value, dict):
            return {k: self._redacted(v, secrets, message or k in MESSAGE_KEYS) for k, v in value.items()}
        return value

    def __call__(self, data: dict[str, Any]) -> Any:
        return self._redacted(self._answer(data), self._secrets())

    def _answer(self, data: dict[str, Any]) -> Any:
        try:
            inputs, params = self._validate(data)
            result = self.pipe(
                inputs,
                errors="raise",
                max_image_pixels=MAX_IMAGE_PIXELS,
                allow_url_images=_allow_urls(),
                **params,
            )
        except RequestError as err:
            return {"error": str(err), "status": err.status}
        except ValueError as err:  # unreadable image, too large image, refused URL, bad option value
            status = 413 if "above the limit" in str(err) or "larger than" in str(err) else 400
            return {"error": str(err), "status": status}
        except Exception as err:  # never an unredacted traceback text to the caller
            return {"error": f"internal error ({type(err).__name__}): {err}", "status": 500}
        try:
            return json.loads(json.dumps(result, allow_nan=False))
        except (TypeError, ValueError) as err:  # never answer with something that is not JSON
            return {"error": f"internal error: the result is not JSON ({err})", "status": 500}

    def _validate(self, data: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        if not isinstance(data, dict) or "inputs" not in data:
            raise RequestError(
                'the request body must be {"inputs": {"text": ..., "image": ...}, "parameters": {...}}'
            )
        inputs = data["inputs"]
        if isinstance(inputs, str):
            inputs = {"text": inputs}
        if not isinstance(inputs, dict):
            raise RequestError(
                f"'inputs' must be an object with 'text' and 'image', got {type(inputs).__name__}"
            )
        text = inputs.get("text")
        if not isinstance(text, str):
            raise RequestError("'inputs.text' must be a string")
        if len(text) > MAX_TEXT_CHARS:
            raise RequestError(
                f"'inputs.text' has {len(text)} characters; the limit is {MAX_TEXT_CHARS}", 413
            )
        image = inputs.get("image")
        if image is not None:
            if not isinstance(image, str):
                raise RequestError("'inputs.image' must be a base64 string, an http(s) URL, or null")
            if image.startswith(("http://", "https://")):
                if not _allow_urls():
                    raise RequestError(
                        "image URLs are not accepted by this endpoint; send the image as base64 "
                        "(the endpoint's owner can enable public URLs with RIVEG_ALLOW_URL_IMAGES=1)"
                    )
            else:
                if image.startswith("data:"):
                    image = image.split(",", 1)[-1]
                if len(image) > (MAX_IMAGE_BYTES * 4 // 3 + 4) * 1.05:  # room for MIME line breaks
                    raise RequestError(f"'inputs.image' is larger than {MAX_IMAGE_BYTES} bytes", 413)
                image = "".join(image.split())  # MIME base64 breaks lines every 76 characters: not an error
                if len(image) > MAX_IMAGE_BYTES * 4 // 3 + 4:
                    raise RequestError(f"'inputs.image' is larger than {MAX_IMAGE_BYTES} bytes", 413)
                try:
                    image = base64.b64decode(image, validate=True)
                except (binascii.Error, ValueError):
                    raise RequestError("'inputs.image' is neither valid base64 nor an http(s) URL") from None
        params = data.get("parameters")
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise RequestError(
                f"'parameters' must be an object like {{\"box_threshold\": 0.3}}, got {json.dumps(params)[:80]}"
            )
        from riveg_hf.options import validate_call_options

        try:
            params = validate_call_options(
                params,
                allowed=PARAMETERS,
                choices={"mask_format": MASK_FORMATS},
                where="parameters",
                json_values=True,
            )
        except TypeError as err:
            raise RequestError(str(err)) from None
        except ValueError as err:
            raise RequestError(f"parameter {err} (JSON responses)") from None
        return {"text": text, "image": image}, params
