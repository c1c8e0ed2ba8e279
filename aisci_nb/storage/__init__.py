"""Where artifacts live: the ArtifactStore protocol, a local and an S3 store."""
