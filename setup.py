"""Packaging for clinlake.

The repository keeps the layout users expect (``pipelines/``, ``schemas/``, ``jobs/``,
``conf/``, ``models/`` at the top level); they are installed as sub-packages of a single
``clinlake`` package so nothing generic such as ``pipelines`` lands in site-packages.
The package's own top (version, CLI, sample notes) lives in ``src/clinlake``, not in a
top-level ``clinlake/`` folder: Spark starts Python workers with ``python -m``, which puts
the working directory first on ``sys.path``, and a ``clinlake/`` folder there would shadow
the installed package when a job is started from the repository root.
"""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = (HERE / "src" / "clinlake" / "VERSION").read_text().strip()

RUNTIME = [
    # PySpark 4.1 is the newest line Great Expectations 1.x supports (pyspark<4.2).
    "pyspark>=4.1,<4.2",
    # PySpark 4.1 warns on pandas 3; Great Expectations needs >=1.3.
    "pandas>=2.2,<3",
    "pyarrow>=15,<27",
    "numpy>=1.26,<3",
    "pyyaml>=6",
    # Delta output without delta-spark's JVM jar: commits from the driver through delta-rs.
    "deltalake>=1.0,<2",
    # Serving the shipped NER / assertion models (no torch at run time).
    "onnxruntime>=1.20,<2",
    # The quality gate; 1.24 supports pyspark<4.2 (tested with 4.1.1 and pandas 2.3).
    "great_expectations==1.24.1",
    # clinlake sql: DuckDB over the Delta tables' current files (listed by delta-rs), offline.
    "duckdb>=2.0,<3",
    # Pure-Python half of Spark NLP: only used for Annotation.dataType() interop.
    "spark-nlp==7.0.0",
]

setup(
    name="clinlake",
    version=VERSION,
    description="Spark-native clinical NLP annotation pipeline: notes in a lake, entity tables out.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=[
        "clinlake",
        "clinlake.pipelines",
        # engine/, spark/, quality/, report/, corpora/, evaluation/, training/ (and their sub-packages)
        *(f"clinlake.pipelines.{name}" for name in find_packages(str(HERE / "pipelines"))),
        "clinlake.schemas",
        "clinlake.jobs",
        "clinlake.conf",
        "clinlake.models",
    ],
    package_dir={
        "clinlake": "src/clinlake",
        "clinlake.pipelines": "pipelines",
        "clinlake.schemas": "schemas",
        "clinlake.jobs": "jobs",
        "clinlake.conf": "conf",
        "clinlake.models": "models",
    },
    package_data={
        "clinlake": ["VERSION", "samples/*.csv"],
        "clinlake.conf": ["*.yaml", "lexicons/*", "expectations/*.yaml", "label_maps/*.yaml"],
        "clinlake.models": ["*.md", "*/*"],
        # npm builds of the CSS/JS/fonts GX's Data Docs pages would load from CDNs, with their
        # licences (see its README); recursive glob needs setuptools >= 62.3.
        "clinlake.pipelines.quality": ["data_docs_assets/*", "data_docs_assets/**/*"],
    },
    install_requires=RUNTIME,
    extras_require={
        # torch/onnx in dev: tests check that exported ONNX models match their PyTorch originals;
        # gensim: a test checks that the word vectors come out the same on every run.
        # torch comes from PyPI: a CUDA build (about 2.5 GB with its NVIDIA libraries) that runs on the CPU;
        # a fresh virtualenv takes about 2 min 20 s for the whole dev install from an empty pip cache.
        # polars: a test runs the README's Polars query on a job's output.
        # playwright: tests open Data Docs and the run report offline in the system Chromium
        # (executable_path=/usr/bin/chromium; `playwright install` is never needed nor run).
        "dev": ["pytest>=8", "chispa==0.12.0", "torch==2.13.0", "onnx>=1.16", "gensim>=4.3", "polars>=1.0",
                "playwright>=1.40,<2"],
        "train": ["torch==2.13.0", "onnx>=1.16", "gensim>=4.3"],
    },
    entry_points={"console_scripts": ["clinlake=clinlake.cli:main"]},
)
