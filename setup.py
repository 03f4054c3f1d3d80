"""Packaging for embedding_reader."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
EXTRAS = {
    "s3": ["s3fs>=2023.6.0"],
    "gcs": ["gcsfs>=2023.6.0"],
    "http": ["aiohttp>=3.9"],
    "ray": ["ray[data]>=2.40"],
}
EXTRAS["all"] = sorted({requirement for group in EXTRAS.values() for requirement in group})

setup(
    name="embedding_reader",
    version="1.0.0",
    description="Read large collections of embeddings (npy, parquet) from any filesystem, fast and within a RAM budget",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    packages=find_packages(include=["embedding_reader", "embedding_reader.*"]),
    package_data={"embedding_reader": ["py.typed"]},
    python_requires=">=3.9",
    install_requires=(HERE / "requirements.txt").read_text(encoding="utf-8").split(),
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["embedding-reader=embedding_reader.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
