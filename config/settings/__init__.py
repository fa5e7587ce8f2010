"""Settings modules: ``base`` reads the environment; ``dev``, ``production`` and ``test`` override."""
