"""The control plane: ingests CloudEvents, projects them into MongoDB, serves the UI.

The FastAPI app is built by `control_plane.app.create_app`; this package imports nothing
itself, because the queue writes through `control_plane.eventlog` without the web stack.
"""
