"""Stage 4: ask the model, synchronously (engine, pacer) or through a batch API (batch/)."""
