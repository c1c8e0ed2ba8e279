"""The read model's queries: what every page and its JSON twin show, computed from MongoDB.

Pages and the REST API call these; nothing here renders or knows about HTTP. Each module
answers for one resource (runs, a run's detail, hypotheses, validations, statistics).
"""

from .events import metric_series, node_states

__all__ = ["metric_series", "node_states"]
