"""The one packaging fact pyproject.toml cannot state: recipes/ ships inside the
wheel as the package `keras_msa_recipes`, so the console scripts of keras_msa.cli
(keras-msa-train, ...) run the very recipes the README documents, from anywhere.
Everything else (metadata, dependencies, extras, entry points) is in pyproject.toml.
"""

from setuptools import find_packages
from setuptools import setup

setup(
    # Here, not in pyproject.toml: setuptools >= 77 deprecates the TOML table
    # form and setuptools < 77 (a fresh venv's) cannot read the SPDX string form.
    license="Apache-2.0",
    packages=find_packages(include=["keras_msa", "keras_msa.*"]) + ["keras_msa_recipes"],
    package_dir={"keras_msa_recipes": "recipes"},
)
