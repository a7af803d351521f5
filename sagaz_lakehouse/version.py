"""The package's version, in one place (the build reads it here; ``sagaz_lakehouse.__version__`` hands it on)."""

__version__ = "0.1.0"
