"""Operator tools: CLI, local services, doctor, debug, log pipe, event docs. Nothing imports ops."""
