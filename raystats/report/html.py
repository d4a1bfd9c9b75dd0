"""The report page: plain HTML, one table of run facts and one <img> per figure.

No templates, scripts or external assets: the page opens from a local folder or an
artifact store as it is, next to its PNG files.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

_STYLE = """
body { font-family: sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { text-align: left; padding: 0.25em 1em 0.25em 0; border-bottom: 1px solid #ddd; vertical-align: top; }
th { font-weight: 600; }
figure { margin: 2em 0; }
img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.92em; color: #444; max-width: 60em; margin-top: 0.4em; }
""".strip()


@dataclass(frozen=True)
class Section:
    """One figure of the report: a heading, the PNG's file name (relative), a caption."""

    heading: str
    image: str
    caption: str


def render_page(title: str, facts: Sequence[tuple[str, object]], sections: Sequence[Section]) -> str:
    """The report as one HTML string; every text is escaped.

    Parameters
    ----------
    title : str
    facts : sequence of (name, value)
        Rows of the run-facts table, in order.
    sections : sequence of Section
        The figures, in order.

    Returns
    -------
    str

    Examples
    --------
    >>> page = render_page("r", [("trials", 3)], [Section("h", "a.png", "c <b>")])
    >>> '<img src="a.png"' in page and "c &lt;b&gt;" in page
    True
    """
    rows = "\n".join(
        f"<tr><th>{html.escape(str(name))}</th><td>{html.escape(str(value))}</td></tr>" for name, value in facts
    )
    figures = "\n".join(
        f'<section>\n<h2>{html.escape(s.heading)}</h2>\n<figure>\n'
        f'<img src="{html.escape(s.image, quote=True)}" alt="{html.escape(s.heading, quote=True)}">\n'
        f"<figcaption>{html.escape(s.caption)}</figcaption>\n</figure>\n</section>"
        for s in sections
    )
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n<style>\n{_STYLE}\n</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n<table>\n{rows}\n</table>\n{figures}\n</body>\n</html>\n"
    )


def write_page(path: str, title: str, facts: Sequence[tuple[str, object]], sections: Sequence[Section]) -> str:
    """Write :func:`render_page` to ``path`` (UTF-8) and return ``path``."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(render_page(title, facts, sections))
    return path
