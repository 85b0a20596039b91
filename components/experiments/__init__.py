"""Online experiments: A/B/n assignment by salted hashed user id, per-user outcomes from the
impression log and the event stream, and their statistical analysis."""
