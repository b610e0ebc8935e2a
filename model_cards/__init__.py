"""Model card templates (Jinja, rendered with ``huggingface_hub.ModelCard.from_template``)."""

from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent

#: The project's source repository, used consistently by every card until riveg-hf is published on PyPI.
REPOSITORY = "https://github.com/riveg-hf/riveg-hf"
#: How a card tells its reader to install the package.
INSTALL_COMMAND = (
    f'pip install "riveg-hf @ git+{REPOSITORY}"   # not on PyPI yet; or `pip install -e .` in a clone'
)


def template(name: str) -> Path:
    """Path of ``<name>.md`` in this folder."""
    path = TEMPLATES / f"{name}.md"
    if not path.is_file():
        valid = sorted(p.stem for p in TEMPLATES.glob("*.md") if p.stem != "README")
        raise FileNotFoundError(f"no model card template {name!r}; valid: {valid}")
    return path
