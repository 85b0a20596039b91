"""Online serving: the recommendation graph as a library (:mod:`components.serving.engine`, which
composes the package's other modules) and its HTTP app (:mod:`components.serving.app`)."""
