"""The package's version, defined once: read by setuptools (pyproject.toml) and imported by ``embedding_reader``."""

__version__ = "1.9.0"
