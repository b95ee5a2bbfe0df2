"""Model cards and models/README.md (pipelines/training/cards.py): rendered from each shipped
model's model.json they are byte for byte the committed files (cheap: no training, no torch)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from clinlake.pipelines.engine.ner.metadata import read_meta
from clinlake.pipelines.resources import models_dir

SHIPPED = ("ncbi_disease", "bc5cdr", "anatem", "bionlp13cg", "linnaeus", "clinical_core", "maccrobat", "ade")


@pytest.mark.parametrize("name", SHIPPED)
def test_the_card_of_a_shipped_model_is_rendered_from_its_model_json(name):
    from clinlake.pipelines.training.cards import ner_model_card
    from clinlake.pipelines.training.clinical_card import clinical_model_card

    model_dir = models_dir() / name
    if not (model_dir / "model.json").exists():
        pytest.skip(f"model {name} not trained")
    meta = read_meta(model_dir)
    card = clinical_model_card if meta.get("kind") == "brat" else ner_model_card
    assert card(model_dir, meta) == (model_dir / "MODEL_CARD.md").read_text(encoding="utf-8")


def test_models_readme_is_rendered_from_the_shipped_models():
    from clinlake.pipelines.training.cards import models_readme

    assert models_readme() == (models_dir() / "README.md").read_text(encoding="utf-8")
    assert models_readme(models_dir()) == models_readme()


def test_a_models_folder_without_trained_models_lists_them_as_not_trained(tmp_path):
    from clinlake.pipelines.training.cards import models_readme

    (tmp_path / "embeddings").mkdir()
    (tmp_path / "embeddings" / "vectors.npy").write_bytes((models_dir() / "embeddings" / "vectors.npy").read_bytes())
    text = models_readme(tmp_path)
    assert "| `ncbi_disease` | – | not trained | | | | | | |" in text
    assert "## Clinical models" not in text  # no clinical model trained: no section


def test_cards_and_the_train_command_line_import_no_torch_onnx_or_gensim():
    script = ("import sys\nimport clinlake.pipelines.training.cards, clinlake.jobs.train\n"
              "print(sorted(m for m in ('torch', 'onnx', 'gensim') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
