"""Figures (PNG), the HTML report and the interactive run viewer.

Importing this package registers the views of an ``ExplorationResult``
(``simec.explore.result.VIEWS``): ``"html"`` for Jupyter, ``"page"`` for ``result.view``.
"""

from ..explore.result import VIEWS
from .viewer import write_viewer
from .viewer_repr import compact_html

VIEWS.register("html", compact_html, replace=True)
VIEWS.register("page", write_viewer, replace=True)
