"""Online serving: the recommendation graph as a library (:mod:`components.serving.engine`)."""
