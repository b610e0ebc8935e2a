"""riveg-hf: Grounded and Segmented Multimodal NER as a Hugging Face task."""

__version__ = "0.1.0"
