"""Label maps (gold corpus type → clinlake label, YAML under ``conf/label_maps/``) and the
corpus type sets they are written against."""
from __future__ import annotations

from pathlib import Path

import yaml

#: MACCROBAT event types that are clinical findings, tests or treatments: the entities whose
#: ``POLARITY`` attribute is an assertion (scored by ``clinlake evaluate assertion-brat`` and
#: used as assertion training signal).
MACCROBAT_FINDING_TYPES: frozenset[str] = frozenset({"Sign_symptom", "Disease_disorder", "Diagnostic_procedure",
                                                     "Therapeutic_procedure", "Medication", "Clinical_event"})


class LabelMapError(ValueError):
    pass


def load_label_map(path: str | Path) -> dict[str, str]:
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LabelMapError(f"label map not found: {path}") from None
    except yaml.YAMLError as exc:
        raise LabelMapError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(raw, dict) or not raw:
        raise LabelMapError(f"{path}: expected a non-empty mapping of gold type to label")
    for key, value in raw.items():
        if not isinstance(key, str) or not isinstance(value, str) or not value:
            raise LabelMapError(f"{path}: every entry must map a gold type (string) to a label (string)")
    return dict(raw)
