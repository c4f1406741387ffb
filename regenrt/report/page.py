"""The shell every report page shares: one self-contained HTML file (pictures embedded as data URIs, styles
inline, no script), with a Content-Security-Policy that forbids fetching anything — so the page opens the same on
any machine, offline, and cannot leak a request."""
from __future__ import annotations

from html import escape

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px;margin-bottom:4px} h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px} td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
th{background:#f3f3f3} .ok{color:#2a7a2a} .bad{color:#b02a2a} .muted{color:#777}
.verdict{font-size:15px;background:#f6f9fc;border:1px solid #cfe0f0;padding:10px 14px}
.panel{display:inline-block;margin:6px 10px 10px 0;vertical-align:top} .panel img{display:block;image-rendering:pixelated}
.panel figcaption{font-size:12px;max-width:330px} code{font-size:12px}
"""


def page(title: str, body: list[str]) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">"
            f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>\n" + "\n".join(body)
            + "\n</body></html>\n")


def table(header: list[str], rows: list[list[str]], attrs: list[str] | None = None) -> str:
    """Cells are HTML already (escape what comes from data); ``attrs``: extra attributes per row."""
    attrs = attrs or [""] * len(rows)
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(f"<tr{a}>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row, a in zip(rows, attrs))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def figure(uri: str, caption: str, ident: str = "") -> str:
    ident = f' id="{escape(ident)}"' if ident else ""
    return f'<figure class="panel"{ident}><img src="{uri}" alt="{escape(caption)}"><figcaption>{caption}</figcaption></figure>'
