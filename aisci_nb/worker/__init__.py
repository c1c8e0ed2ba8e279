"""The headless worker on a pod: claims runs, executes their steps, reports outcomes."""
