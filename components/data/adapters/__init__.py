"""Adapters from real data sets (and splits brought as files) to the project's drop format.

Each adapter is a pure function from a data set's own tables to a
:class:`~components.data.adapters.drop.Drop` with a reconciliation; :mod:`components.data.realdata`
reads the vendored files and writes the drop folder.
"""
