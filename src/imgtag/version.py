"""imgtag's version, in a module of its own: the package's `__init__` re-exports it lazily with the Python API,
and modules that stamp their outputs (XMP's `xmptk`) import it from here without importing the package."""

__version__ = "0.1.0"
