"""People: the faces the vision pipeline finds, grouped into people that grow as new faces arrive.

``faces`` writes face rows (keeping each face's person across re-analysis), ``grouping`` assigns new faces and
re-clusters, ``edits`` holds the user's actions (name, merge, split, hide) and ``evaluate`` scores the clusters
against a sample library's ground truth. Everything lives in the library database (tables ``faces`` and ``people``
from the library schema, plus ``face_pins`` from this package's migration namespace ``people``).
"""
