"""imgtag: tag and describe large folders of images with vision-language models."""

__version__ = "0.1.0"
