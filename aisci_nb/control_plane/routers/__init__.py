"""The control plane's routes for people: one module per resource, each page next to its
JSON twin (`/x` renders what `GET /api/x` answers)."""
