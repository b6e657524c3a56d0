"""Stage 5: judge a model answer: stop reason, parse with safe repairs, full-schema validation."""
