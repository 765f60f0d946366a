"""The browser side of pykoii: the ledger explorer (read-only, for anyone) and the node dashboard
(for the node's operator, on port 30017). Server-rendered HTML from Jinja2 templates in this
package, a small stylesheet and a few lines of JavaScript for live updates; no build step, and
every page reads fine with JavaScript off.

- ``create_explorer(client_or_source) -> Starlette``, mounted by the ledger service at ``/explorer``
- ``create_dashboard(node) -> list[BaseRoute]``, put first in the node's app routes
"""

from .explorer import create_explorer
from .node_dashboard import create_dashboard

__all__ = ["create_dashboard", "create_explorer"]
