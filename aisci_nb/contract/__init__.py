"""Pure rules shared by kernel, worker and control plane: events, lifecycle, failures, params.

No I/O here, so every side can import it and unit tests need no services.
"""
