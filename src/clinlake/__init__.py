"""clinlake: Spark-native clinical NLP annotation (NER + assertion) over notes in a lake."""
from importlib import resources as _resources

__version__ = _resources.files(__name__).joinpath("VERSION").read_text().strip()
