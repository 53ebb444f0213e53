"""mkdocs hook: render the Sphinx cross-reference roles that erasus docstrings use (``:func:`x```,
``:class:`~a.b.C```) as plain code, as Sphinx would show them, instead of a literal ``:func:`` prefix.

mkdocstrings' Google-style parser keeps the role text; the docstrings are also read in IDEs and ``help()``,
where the roles are the convention, so they are translated here rather than rewritten at the source.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:py:)?(?:mod|class|func|meth|attr|data|exc|obj|const):<code>(~?)([^<]*)</code>")


def _render(match: re.Match[str]) -> str:
    short, target = match.group(1), match.group(2)
    return f"<code>{target.rsplit('.', 1)[-1] if short else target}</code>"


def on_page_content(html: str, **kwargs: Any) -> str:
    return _ROLE.sub(_render, html)
