"""What every stage on an OpenAI-compatible server shares (the served grounder and the served entailment stage):
no weights here, one chat client, the family of the served model, and the pixel bounds of the images it is sent.

A served stage's family class mixes :class:`ServedStage` in before its role's base class and calls
:meth:`ServedStage._connect` from its constructor; its options (:meth:`served_options`) record the endpoint's
settings -- never a token -- so a saved composite reconnects to the same server.
"""

from __future__ import annotations

from typing import Any

from ..serving.images import check_pixels, served_vlm_client

__all__ = ["ServedStage"]


class ServedStage:
    """The served half of a stage: ``client``, ``endpoint_family``, ``min_pixels`` / ``max_pixels``."""

    def _connect(
        self,
        role: str,
        endpoint: str | dict,
        endpoint_model: str | None,
        endpoint_family: str | None,
        min_pixels: int,
        max_pixels: int,
        default_family: str | None = None,
    ) -> None:
        """Check the pixel bounds (:data:`~riveg_hf.serving.images.PIXEL_BOUNDS`), then build the client and
        find the served model's family (an unknown one is an error naming the choices)."""
        self.min_pixels, self.max_pixels = check_pixels(min_pixels, max_pixels, role)
        self.client, self.endpoint_family = served_vlm_client(
            endpoint, endpoint_model, endpoint_family, role, default_family=default_family
        )

    def clients(self) -> list[Any]:
        return [self.client]

    def served_options(self) -> dict[str, Any]:
        """The endpoint's settings (URL, model, timeouts ...; never the token), the family and pixel bounds."""
        return {"endpoint": self.client.config(), "endpoint_family": self.endpoint_family,
                "min_pixels": self.min_pixels, "max_pixels": self.max_pixels}  # fmt: skip

    def save_pretrained(self, directory) -> None:  # nothing but the options: the weights are the server's
        return None

    def to(self, device):
        return self
