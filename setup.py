"""Packaging: the repository keeps its short folder names (adaptors/, config/); installed,
they are `relay_adaptors` and `relay_config`, so they never collide with another
distribution's top-level `config` or `adaptors`. Everything else is in pyproject.toml."""
from setuptools import find_packages, setup

FOLDERS = {"relay": "relay", "relay_adaptors": "adaptors", "relay_config": "config"}
PACKAGES = [f"{name}.{sub}" if sub else name
            for name, folder in FOLDERS.items() for sub in ["", *find_packages(folder)]]

setup(packages=PACKAGES, package_dir=FOLDERS)
