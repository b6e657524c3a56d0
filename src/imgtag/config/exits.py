"""Exit codes, in a module of their own so the command line can name them without importing any stage."""

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
