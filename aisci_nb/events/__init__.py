"""The sending side of events: sequence counter, spool, sinks, emitter."""
