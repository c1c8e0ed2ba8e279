"""One notebook under papermill, without MongoDB: engine, execution, failure mapping."""
