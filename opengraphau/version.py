"""The package version: one home, read by pyproject.toml, `opengraphau.__version__` and run.json."""

__version__ = "0.4.0"
