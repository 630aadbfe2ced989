"""The `archiver` console script: the one entry point that knows receiver, workers and models."""
