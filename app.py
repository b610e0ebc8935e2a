"""Entry point of the Hugging Face Space (and `python app.py` locally): the riveg-hf Gradio demo.

Set RIVEG_MODEL to a composite checkpoint (hub id or folder); without it the zero-shot task default is used.
Binds 127.0.0.1 unless GRADIO_SERVER_NAME says otherwise (Spaces set it to 0.0.0.0).
"""

import os

from riveg_hf.demo import launch

if __name__ == "__main__":
    launch(
        os.environ.get("RIVEG_MODEL"),
        task=os.environ.get("RIVEG_TASK", "grounded-mner"),
        host=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
    )
