"""Batch APIs: chunk, submit with the submission committed first, poll, collect, resubmit, cancel."""
