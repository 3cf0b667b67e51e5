"""The image pipeline: pure functions from original bytes to encoded output; no HTTP here."""
