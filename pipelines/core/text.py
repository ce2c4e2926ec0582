"""Text normalisation shared by every reader: plain text, `\\n` newlines, entities unescaped.

Three public functions, each total (never raises on odd input):

* :func:`normalise_newlines` – `\\r\\n`/`\\r` to `\\n`, trailing blanks and runs of blank lines trimmed;
* :func:`unescape` – HTML entities to characters (twice, for Pushshift's double escaping), then newlines;
* :func:`html_to_text` – rendered HTML (Stack Exchange bodies, Discourse `cooked`) to plain text.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

_BLOCK = {"p", "div", "br", "li", "ul", "ol", "pre", "blockquote", "h1", "h2", "h3", "h4", "h5", "h6",
          "tr", "table", "hr", "aside", "details", "summary", "section", "article", "header", "footer",
          "figure", "figcaption", "dl", "dt", "dd"}
_SKIP = {"script", "style", "head", "template"}
# Discourse wraps uploaded images in `<div class="meta">` holding the file name, pixel size and
# byte size ("image 1024×768 120 KB"), and quote headers in `quote-controls`: page chrome, not speech.
_SKIP_CLASSES = {"meta", "quote-controls"}
_MULTI_NL = re.compile(r"\n{3,}")
_TRAIL_WS = re.compile(r"[ \t]+\n")
_SPACES = re.compile(r"[ \t\r\n\f]+")
# Private-use sentinels marking where a blockquote opens and closes while the parser runs;
# lines between them get a `> ` prefix once whitespace is settled. Input copies are removed first.
_BQ_OPEN, _BQ_CLOSE = "\ue000", "\ue001"
# Quote prefixes stop growing past this depth: each line carries at most this many `> `, so the
# output is linear in the input (an uncapped prefix makes 15k nested <blockquote>s, 390 KB of
# HTML, render to ~240M characters). Real quote chains are a handful of levels deep.
MAX_QUOTE_DEPTH = 10
# html.parser (Python <= 3.13) raises AssertionError on a marked section whose keyword it does
# not know (`<![`, `<![foo[`); browsers treat those as bogus comments. Escaped, they stay text.
_BAD_MARKED_SECTION = re.compile(r"<!\[(?!(?:temp|cdata|ignore|include|rcdata|if|else|endif)(?![-_.a-z0-9]))",
                                 re.IGNORECASE)
_ANY_TAG = re.compile(r"<[^<>]*>")
MAX_UNCLOSED_TAIL = 4096  # characters of an unclosed construct at the end rendered the old (quadratic) way


def normalise_newlines(text: str) -> str:
    """`\\r\\n` and `\\r` become `\\n`; trailing spaces before newlines go; 3+ newlines become 2; ends stripped."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if " \n" in text or "\t\n" in text:
        text = _TRAIL_WS.sub("\n", text)
    if "\n\n\n" in text:
        text = _MULTI_NL.sub("\n\n", text)
    return text.strip()


def unescape(text: str) -> str:
    """HTML entities (`&amp;`, `&#39;`, also double-escaped `&amp;gt;`) to characters, then newlines normalised."""
    if "&" in text:
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
        self.skip_div = 0  # >0 while inside a skipped `<div class=meta>`: counts nested divs

    def handle_starttag(self, tag, attrs):
        if self.skip_div:
            if tag == "div":
                self.skip_div += 1
            return
        if tag == "div" and _SKIP_CLASSES.intersection((dict(attrs).get("class") or "").split()):
            self.skip_div = 1
            return
        if tag in _SKIP:
            self.skip += 1
        elif tag == "pre":
            self.pre += 1
            self.parts.append("\n")
        elif tag == "blockquote":
            self.parts.append("\n" + _BQ_OPEN)
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self.parts.append(alt)
        elif tag in _BLOCK:
            self.parts.append("\n")

    def handle_startendtag(self, tag, attrs):
        if tag in ("br", "hr", "img"):
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag):
        if self.skip_div:
            if tag == "div":
                self.skip_div -= 1
            return
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag == "pre":
            self.pre = max(0, self.pre - 1)
            self.parts.append("\n")
        elif tag == "blockquote":
            self.parts.append(_BQ_CLOSE + "\n")
        elif tag in _BLOCK and tag != "li":  # the next `<li>` starts its own line; no blank line between items
            self.parts.append("\n")

    def handle_data(self, data):
        if self.skip or self.skip_div:
            return
        data = data.replace(_BQ_OPEN, "").replace(_BQ_CLOSE, "")
        self.parts.append(data if self.pre else _SPACES.sub(" ", data))


def _quote_lines(text: str) -> str:
    """Prefix each line inside blockquote sentinels with `> ` per nesting level; drop the sentinels."""
    out, depth = [], 0
    for line in text.split("\n"):
        opens, closes = line.count(_BQ_OPEN), line.count(_BQ_CLOSE)
        line_depth = depth + opens
        depth = max(depth + opens - closes, 0)
        if opens or closes:
            line = line.replace(_BQ_OPEN, "").replace(_BQ_CLOSE, "").strip(" ")
        if line_depth and line:
            line = "> " * min(line_depth, MAX_QUOTE_DEPTH) + line
        out.append(line)
    return "\n".join(out)


def html_to_text(markup: str) -> str:
    """Render HTML (Stack Exchange bodies, Discourse `cooked`) to plain text.

    Block elements become line breaks, list items `- `, blockquote lines get a `> ` prefix
    per level (at most ``MAX_QUOTE_DEPTH`` of them, so memory stays linear in the input
    however deep the nesting), images their alt text, links their text; scripts, styles and
    Discourse image metadata are dropped; whitespace inside `<pre>` is kept; entities are
    decoded. The result is normalised like :func:`normalise_newlines`. Never raises on
    malformed HTML: markup the parser rejects is rendered with its tags stripped, and an
    unclosed construct longer than ``MAX_UNCLOSED_TAIL`` at the end is dropped, so time
    stays linear too.
    """
    if "<" not in markup and "&" not in markup:
        return normalise_newlines(markup)
    if "<![" in markup:
        markup = _BAD_MARKED_SECTION.sub("&lt;![", markup)
    p = _Text()
    try:
        p.feed(markup)
        # What feed() leaves unparsed is a construct that never ends before the end of the input
        # (an unclosed tag, comment or declaration). html.parser (Python < 3.13.4) then re-scans
        # to the end once per `<` in it: quadratic (45 KB of `<a b='c' ` took 12 s). Past a few KB,
        # drop it as HTML5 and Python >= 3.13.4 do (an unclosed construct at end of file is not
        # text); a short one is closed the old way.
        if len(p.rawdata) > MAX_UNCLOSED_TAIL and p.rawdata.startswith("<") and p.cdata_elem is None:
            p.rawdata = ""
        p.close()
        text = "".join(p.parts)
    except Exception:  # noqa: BLE001 - html.parser asserts on some malformed markup; a message is still text
        text = html.unescape(_ANY_TAG.sub(" ", markup.replace(_BQ_OPEN, "").replace(_BQ_CLOSE, "")))
    text = "\n".join(line.strip(" ") if not line.startswith("    ") else line.rstrip() for line in text.split("\n"))
    if _BQ_OPEN in text:
        text = _quote_lines(text)
    return normalise_newlines(text)
