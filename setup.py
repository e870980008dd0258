"""The one packaging fact pyproject.toml cannot state: recipes/ ships inside the
wheel as the package `keras_msa_recipes`, so the console scripts of keras_msa.cli
(keras-msa-train, ...) run the very recipes the README documents, from anywhere.
Everything else (metadata, dependencies, extras, entry points) is in pyproject.toml.
"""

from setuptools import find_packages
from setuptools import setup

setup(
    packages=find_packages(include=["keras_msa", "keras_msa.*"]) + ["keras_msa_recipes"],
    package_dir={"keras_msa_recipes": "recipes"},
)
