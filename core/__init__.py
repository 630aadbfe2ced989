"""Settings, the archiver's exception tree, token encryption and the one secret scrubber:
what every other package may import, importing nothing of the project."""
