"""Libraries the step notebooks call: the LLM layer, ideation, the tree search, plots,
the paper and the review. Never imports the queue or the worker."""
