"""Stage 1-3: find files, read and check them, shrink them for the model."""
