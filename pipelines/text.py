"""Text normalisation shared by every reader: plain text, `\\n` newlines, entities unescaped."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

_BLOCK = {"p", "div", "br", "li", "ul", "ol", "pre", "blockquote", "h1", "h2", "h3", "h4", "h5", "h6",
          "tr", "table", "hr", "aside", "details", "summary", "section", "article", "header", "footer"}
_SKIP = {"script", "style", "head", "template"}
_MULTI_NL = re.compile(r"\n{3,}")
_TRAIL_WS = re.compile(r"[ \t]+\n")


def normalise_newlines(text: str) -> str:
    """`\\r\\n` and `\\r` become `\\n`; trailing spaces before newlines go; 3+ newlines become 2."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _TRAIL_WS.sub("\n", text)
    return _MULTI_NL.sub("\n\n", text).strip()


def unescape(text: str) -> str:
    """HTML entities (`&amp;`, `&#39;`, also double-escaped `&amp;gt;`) to characters, then newlines normalised."""
    for _ in range(2):  # Pushshift bodies are sometimes escaped twice
        new = html.unescape(text)
        if new == text:
            break
        text = new
    return normalise_newlines(text)


class _Text(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0
        self.pre = 0

    def handle_starttag(self, tag, attrs):
        if tag in _SKIP:
            self.skip += 1
        elif tag == "pre":
            self.pre += 1
            self.parts.append("\n")
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self.parts.append(alt)
        elif tag in _BLOCK:
            self.parts.append("\n")

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag):
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag == "pre":
            self.pre = max(0, self.pre - 1)
            self.parts.append("\n")
        elif tag in _BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if self.skip:
            return
        self.parts.append(data if self.pre else re.sub(r"[ \t\r\n]+", " ", data))


def html_to_text(markup: str) -> str:
    """Render HTML (Stack Exchange bodies, Discourse `cooked`) to plain text.

    Block elements become line breaks, list items `- `, images their alt text; scripts and
    styles are dropped; whitespace inside `<pre>` is kept.
    """
    if "<" not in markup and "&" not in markup:
        return normalise_newlines(markup)
    p = _Text()
    p.feed(markup)
    p.close()
    text = "".join(p.parts)
    text = "\n".join(line.strip(" ") if not line.startswith("    ") else line.rstrip() for line in text.split("\n"))
    return normalise_newlines(text)
