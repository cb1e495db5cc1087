"""The interview review deck: one static HTML page generated from the notebooks' question cells.

    attnlab cards                      write docs/cards.html
    attnlab cards --out FILE           write it elsewhere (links to the notebooks stay relative)
    attnlab cards --check              exit 1 when the committed page differs from a fresh generation

One source. The cards are read from the `question:<id>` cells of the solution notebook sources,
`solutions/notebooks/NN_slug.py`, with the parser `attnlab build` uses (`build.load_source_notebook`,
which also rejects unknown tags). Those cells are copied verbatim into the learner notebooks, so the
cards say exactly what a learner reads; each card links to `notebooks/NN_slug.ipynb` and names the
section (the `## ` heading above the cell) that answers it with evidence. Never edit the page by hand.

A card: the question (the cell's `### ` heading), the 30-second answer (the paragraphs before the first
list, table, code or math block), then the rest of the cell (the bullets). Markdown is rendered here:
`code` as <code>, **bold**, *italic*, links, lists, tables, fenced code, and LaTeX math converted to
plain HTML and Unicode (sub/superscripts, Greek, operators, stacked fractions, radicals), so the page
needs no script or font from the network. A LaTeX command the converter does not know is shown as
written, in monospace, and reported as a warning.

Difficulty chips (Easy green, Medium amber, Hard red) come from `course.DIFFICULTY`; the left border's
colour is the notebook's. Each notebook's quick-review checklist is generated from its `## Summary`
section: one item per table row (first column in bold, then "column header: value" for the others)
and per top-level bullet; paragraphs that only list the questions answered or announce the next
notebook are left out. A notebook without a Summary section gets its questions' titles instead.

The page (plain HTML, CSS and vanilla JavaScript in one file; works from a file:// URL):
filters by notebook and difficulty (and by mark), a drill mode that hides the answers, "knew it" /
"review again" marks and checklist ticks kept in the browser's localStorage, a progress count, and a
print layout (the filtered cards with their answers, a card never split across pages).

Keys (also listed on the page):
    d               drill mode on / off
    j / k           next / previous card (n / p too)
    Space, Enter    in drill mode: show / hide the answer of the current card (a click on the question too)
    1 / 2 / 0       knew it / review again / clear the mark (in drill mode, then on to the next card)
    Esc             hide every answer again
"""
import argparse
import hashlib
import html
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .build import BuildError, cell_tags, load_source_notebook
from .course import ALL_QUESTIONS, DIFFICULTY, NOTEBOOKS

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "solutions" / "notebooks"
DEFAULT_OUT = ROOT / "docs" / "cards.html"
LEVELS = ("Easy", "Medium", "Hard")
# one colour per notebook (left borders, filter chips); readable on white and in print
COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#17a2b8", "#c9a100",
           "#e377c2", "#9c755f", "#e15759", "#6b6ecf", "#2ca02c", "#7f7f7f")


class CardsError(Exception):
    """A question cell or the course plan cannot make a card (the message names the file and cell)."""


# ------------------------------------------------------------------------------------------ LaTeX
_GREEK = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ϵ", "varepsilon": "ε",
    "zeta": "ζ", "eta": "η", "theta": "θ", "vartheta": "ϑ", "iota": "ι", "kappa": "κ", "lambda": "λ",
    "mu": "μ", "nu": "ν", "xi": "ξ", "pi": "π", "rho": "ρ", "sigma": "σ", "tau": "τ", "upsilon": "υ",
    "phi": "ϕ", "varphi": "φ", "chi": "χ", "psi": "ψ", "omega": "ω", "ell": "ℓ",
}
_UPPER_GREEK = {"Gamma": "Γ", "Delta": "Δ", "Theta": "Θ", "Lambda": "Λ", "Xi": "Ξ", "Pi": "Π",
                "Sigma": "Σ", "Upsilon": "Υ", "Phi": "Φ", "Psi": "Ψ", "Omega": "Ω"}
_RELATIONS = {
    "le": "≤", "leq": "≤", "ge": "≥", "geq": "≥", "neq": "≠", "ne": "≠", "approx": "≈", "sim": "∼",
    "simeq": "≃", "equiv": "≡", "propto": "∝", "to": "→", "rightarrow": "→", "leftarrow": "←",
    "gets": "←", "Rightarrow": "⇒", "Leftarrow": "⇐", "Longrightarrow": "⟹", "longrightarrow": "⟶",
    "iff": "⟺", "mapsto": "↦", "in": "∈", "notin": "∉", "subset": "⊂", "subseteq": "⊆", "ll": "≪",
    "gg": "≫", "mid": "∣", "perp": "⊥",
}
_BINARY = {"cdot": "·", "times": "×", "pm": "±", "mp": "∓", "circ": "∘", "odot": "⊙", "otimes": "⊗",
           "oplus": "⊕", "cap": "∩", "cup": "∪", "setminus": "∖", "ast": "∗", "div": "÷", "wedge": "∧",
           "vee": "∨"}
_SYMBOLS = {
    "top": "⊤", "infty": "∞", "sum": "∑", "prod": "∏", "int": "∫", "dots": "…", "ldots": "…",
    "cdots": "⋯", "vdots": "⋮", "nabla": "∇", "partial": "∂", "forall": "∀", "exists": "∃",
    "emptyset": "∅", "varnothing": "∅", "lvert": "|", "rvert": "|", "vert": "|", "lVert": "‖",
    "rVert": "‖", "Vert": "‖", "|": "‖", "langle": "⟨", "rangle": "⟩", "lbrace": "{", "rbrace": "}",
    "{": "{", "}": "}", "lfloor": "⌊", "rfloor": "⌋", "lceil": "⌈", "rceil": "⌉", "prime": "′",
    "star": "⋆", "dagger": "†", "hbar": "ℏ", "%": "%", "#": "#", "$": "$", "&": "&amp;", "_": "_",
    "backslash": "\\", "neg": "¬", "square": "□",
}
_SPACES = {",": "\u2009", ":": "\u2005", ";": "\u2005", " ": " ", "quad": "\u2003",
           "qquad": "\u2003\u2003", "!": "", "enspace": "\u2002"}
_FUNCTIONS = {"log", "ln", "exp", "tanh", "sinh", "cosh", "sin", "cos", "tan", "min", "max", "arg",
              "argmax", "argmin", "det", "lim", "sup", "inf", "dim", "ker", "deg", "gcd", "Pr", "softmax"}
_SIZES = {"left", "right", "big", "Big", "bigg", "Bigg", "bigl", "bigr", "Bigl", "Bigr", "biggl",
          "biggr", "Biggl", "Biggr", "middle", "displaystyle", "textstyle", "limits", "nolimits"}
_ACCENTS = {"tilde": "\u0303", "widetilde": "\u0303", "hat": "\u0302", "widehat": "\u0302",
            "bar": "\u0304", "vec": "\u20d7", "overrightarrow": "\u20d7", "overleftarrow": "\u20d6",
            "dot": "\u0307", "ddot": "\u0308", "check": "\u030c", "breve": "\u0306"}
_BLACKBOARD = {"E": "𝔼", "R": "ℝ", "N": "ℕ", "Z": "ℤ", "Q": "ℚ", "C": "ℂ", "P": "ℙ", "1": "𝟙"}
_TEXT_FONTS = {"text", "textrm", "textnormal", "mbox", "mathrm", "operatorname", "textsf", "mathsf",
               "texttt", "mathtt"}
_TOKEN = re.compile(r"\\([A-Za-z]+)|\\(.)|(\s+)|(.)", re.S)


def _tokens(tex):
    out = []
    for m in _TOKEN.finditer(tex):
        if m.group(1):
            out.append(("cmd", m.group(1)))
        elif m.group(2) is not None:
            out.append(("cmd", m.group(2)))
        elif m.group(3):
            out.append(("space", m.group(3)))
        else:
            out.append(("char", m.group(4)))
    return out


class _Math:
    """A small recursive converter from LaTeX math to HTML (no layout engine: inline flow only)."""

    def __init__(self, tex, warnings):
        self.toks = _tokens(tex)
        self.i = 0
        self.warnings = warnings

    def peek(self, skip_space=True):
        j = self.i
        while skip_space and j < len(self.toks) and self.toks[j][0] == "space":
            j += 1
        return (self.toks[j], j) if j < len(self.toks) else (None, j)

    def raw_group(self):
        """The text of the next {...} group, verbatim (for \\text and friends)."""
        tok, j = self.peek()
        if tok != ("char", "{"):
            if tok is None:
                return ""
            self.i = j + 1
            return tok[1]
        depth, j, parts = 0, j, []
        while j < len(self.toks):
            kind, val = self.toks[j]
            if (kind, val) == ("char", "{"):
                depth += 1
                if depth == 1:
                    j += 1
                    continue
            elif (kind, val) == ("char", "}"):
                depth -= 1
                if depth == 0:
                    break
            parts.append("\\" + val if kind == "cmd" else val)
            j += 1
        self.i = j + 1
        return "".join(parts)

    def atom(self, upright=False):
        """Parse one atom (a group, a command with its arguments, or one character): its HTML."""
        tok, j = self.peek()
        if tok is None:
            return ""
        self.i = j + 1
        kind, val = tok
        if kind == "char":
            if val == "{":
                return self.sequence(stop="}", upright=upright)
            return self.char(val, upright)
        return self.command(val, upright)

    def sequence(self, stop=None, upright=False):
        parts = []
        while self.i < len(self.toks):
            kind, val = self.toks[self.i]
            if kind == "space":
                self.i += 1
                if upright:
                    parts.append(" ")
                continue
            if (kind, val) == ("char", stop):
                self.i += 1
                break
            if kind == "char" and val in "_^":
                self.i += 1
                inner = self.atom(upright=upright)
                inner = re.sub(r" ?(−|\+|=|&lt;|&gt;|≤|≥|→|·) ", r"\1", inner).strip()  # tight in scripts
                tag = "sub" if val == "_" else "sup"
                parts.append(f"<{tag}>{inner}</{tag}>")
                continue
            if kind == "char" and val in "+-" and not parts:
                self.i += 1
                parts.append("−" if val == "-" else "+")  # unary sign: no spaces around it
                continue
            parts.append(self.atom(upright=upright))
        return "".join(parts)

    def char(self, c, upright):
        if c.isalpha() and c.isascii():
            return c if upright else f"<i>{c}</i>"
        if c == "-":
            return " − "
        if c in "+=<>":
            return f" {html.escape(c)} "
        if c in ",;":
            return c + "\u2009"
        if c == "'":
            return "′"
        if c == "}":  # unbalanced: show it
            return "}"
        if c == "~":
            return "\u00a0"
        if c == "&":
            return " "  # alignment tab in an aligned environment
        return html.escape(c)

    def command(self, name, upright):
        if name in _GREEK:
            return f"<i>{_GREEK[name]}</i>"
        if name in _UPPER_GREEK:
            return _UPPER_GREEK[name]
        if name in _RELATIONS:
            return f" {_RELATIONS[name]} "
        if name in _BINARY:
            return f" {_BINARY[name]} "
        if name in _SYMBOLS:
            return _SYMBOLS[name]
        if name in _SPACES:
            return _SPACES[name]
        if name == "\\":
            return "<br>"
        if name in _FUNCTIONS:  # upright, and a thin space before an argument without brackets
            tok, _ = self.peek()
            gap = "" if tok is None or tok in (("char", "("), ("char", "["), ("char", "_"), ("char", "^"),
                                                ("cmd", "left"), ("cmd", ",")) else "\u2009"
            return f'<span class="fn">{name}</span>{gap}'
        if name in _SIZES:
            tok, j = self.peek()
            if name in ("left", "right", "middle") and tok == ("char", "."):
                self.i = j + 1  # \left. is an invisible delimiter
            return ""
        if name in _TEXT_FONTS:
            text = self.raw_group()
            if "\\" in text or "$" in text:  # \mathrm{LN} is plain; \text{$x$ ...} is rare: convert it
                text = _Math(text, self.warnings).sequence(upright=True)
            else:
                text = html.escape(text, quote=False)
            cls = "tt" if name in ("texttt", "mathtt") else "rm"
            return f'<span class="{cls}">{text}</span>'
        if name in ("mathbf", "boldsymbol", "bm", "textbf"):
            return f"<b>{self.atom(upright=upright)}</b>"
        if name in ("mathit", "textit", "emph"):
            return f"<i>{self.atom(upright=True)}</i>"
        if name == "mathcal":
            return f'<span class="cal">{self.atom(upright=True)}</span>'
        if name == "mathbb":
            text = self.raw_group()
            return "".join(_BLACKBOARD.get(c, html.escape(c)) for c in text)
        if name == "sqrt":
            tok, j = self.peek()
            index = ""
            if tok == ("char", "["):
                self.i = j + 1
                index = f"<sup>{self.sequence(stop=']', upright=upright)}</sup>"
            return f'<span class="sqrt">{index}√<span class="rad">{self.atom(upright=upright)}</span></span>'
        if name in ("frac", "tfrac", "dfrac", "cfrac"):
            num, den = self.atom(upright=upright), self.atom(upright=upright)
            return f'<span class="frac"><span class="num">{num}</span><span class="den">{den}</span></span>'
        if name in ("binom", "tbinom"):
            top, bottom = self.atom(upright=upright), self.atom(upright=upright)
            return f'(<span class="frac"><span class="num">{top}</span><span>{bottom}</span></span>)'
        if name in _ACCENTS:
            inner = self.atom(upright=upright)
            plain = re.sub(r"<[^>]+>", "", inner)
            if len(plain) == 1:  # one symbol: a combining accent on it
                return inner.replace(plain, plain + _ACCENTS[name], 1)
            return f'<span class="over">{inner}</span>'
        if name in ("overline", "underline"):
            return f'<span class="{name[:-4]}">{self.atom(upright=upright)}</span>'
        if name in ("underbrace", "overbrace"):
            return self.atom(upright=upright)
        if name in ("begin", "end"):
            self.raw_group()  # aligned environments: their rows flow inline
            return ""
        self.warnings.append(f"\\{name}")
        return f'<span class="tex">\\{html.escape(name)}</span>'


def render_math(tex, warnings=None, display=False):
    """HTML for one LaTeX formula (the text between $...$ or $$...$$)."""
    warnings = [] if warnings is None else warnings
    body = _Math(tex.strip(), warnings).sequence()
    body = re.sub(r"</i><i>", "", body)
    body = re.sub(r" {2,}", " ", body).strip()
    tag = "div" if display else "span"
    cls = "math display" if display else "math"
    return f'<{tag} class="{cls}">{body}</{tag}>'


# --------------------------------------------------------------------------------------- Markdown
_INLINE = re.compile(r"(`+)(.+?)\1|(?<![\\$\w])\$(?!\s)((?:\\\$|[^$])+?)(?<!\s)\$(?![\w$])")


def render_inline(text, warnings=None):
    """HTML for one paragraph of Markdown inline text: code, math, bold, italic, links; the rest escaped."""
    warnings = [] if warnings is None else warnings
    saved = []

    def keep(fragment):
        saved.append(fragment)
        return f"\x00{len(saved) - 1}\x00"

    def protect(m):
        if m.group(1):
            return keep(f"<code>{html.escape(m.group(2).strip(), quote=False)}</code>")
        return keep(render_math(m.group(3), warnings))

    text = _INLINE.sub(protect, text.replace("\x00", ""))
    text = html.escape(text, quote=False)
    text = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)",
                  lambda m: f'<a href="{m.group(2).replace(chr(34), "%22")}">{m.group(1)}</a>', text)
    text = re.sub(r"\*\*(?=\S)(.+?)(?<=\S)\*\*", r"<strong>\1</strong>", text)
    text = re.sub(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])", r"<em>\1</em>", text)
    text = re.sub(r"(?<![\w_])_(?=\S)([^_]+?)(?<=\S)_(?![\w_])", r"<em>\1</em>", text)
    text = text.replace("\\$", "$")
    return re.sub(r"\x00(\d+)\x00", lambda m: saved[int(m.group(1))], text)


_ITEM = re.compile(r"^(\s*)([-*+]|\d+[.)])\s+(.*)$")
_FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+-]*)\s*$")


def _starts_block(line):
    s = line.strip()
    return bool(_ITEM.match(line) or _FENCE.match(line) or s.startswith("$$") or s.startswith("|")
                or re.match(r"#{1,6}\s", s) or s.startswith(">"))


def _table(rows, warnings):
    cells = [[c.strip() for c in r.strip().strip("|").split("|")] for r in rows]
    head, body = cells[0], cells[1:]
    if body and all(re.fullmatch(r":?-{2,}:?", c) for c in body[0]):
        body = body[1:]
    else:
        head, body = None, cells
    out = ["<table>"]
    if head:
        out.append("<thead><tr>" + "".join(f"<th>{render_inline(c, warnings)}</th>" for c in head)
                   + "</tr></thead>")
    out.append("<tbody>" + "".join("<tr>" + "".join(f"<td>{render_inline(c, warnings)}</td>" for c in r)
                                   + "</tr>" for r in body) + "</tbody></table>")
    return head, body, "".join(out)


def _list_html(items, warnings):
    """items: [(indent, ordered, text)] in order; nesting follows the indentation."""
    def build(start, indent):
        ordered = items[start][1]
        out, i = [], start
        while i < len(items) and items[i][0] >= indent:
            if items[i][0] > indent:  # a deeper run: a nested list inside the previous item
                nested, i = build(i, items[i][0])
                out[-1] = out[-1][: -len("</li>")] + nested + "</li>"
                continue
            out.append(f"<li>{render_inline(items[i][2], warnings)}</li>")
            i += 1
        tag = "ol" if ordered else "ul"
        return f"<{tag}>{''.join(out)}</{tag}>", i

    html_out, i, parts = "", 0, []
    while i < len(items):
        html_out, i = build(i, items[i][0])
        parts.append(html_out)
    return "".join(parts)


def parse_blocks(text, warnings=None):
    """Split Markdown into blocks: [(kind, data, html)], kind in p, list, table, code, math, heading, quote.

    data is the paragraph text (p), the top-level item texts (list), (header, rows) (table), else None."""
    warnings = [] if warnings is None else warnings
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        line = lines[i]
        s = line.strip()
        if not s:
            i += 1
            continue
        fence = _FENCE.match(line)
        if fence:
            body, i = [], i + 1
            while i < len(lines) and not lines[i].strip().startswith(fence.group(1)):
                body.append(lines[i])
                i += 1
            i += 1
            lang = f' class="language-{fence.group(2)}"' if fence.group(2) else ""
            blocks.append(("code", None, f"<pre><code{lang}>{html.escape(chr(10).join(body), quote=False)}"
                                         "</code></pre>"))
            continue
        if s.startswith("$$"):
            body = s[2:]
            while not (body.rstrip().endswith("$$") and len(body.strip()) >= 2) and i + 1 < len(lines):
                i += 1
                body += "\n" + lines[i]
            i += 1
            tex = body.rstrip()
            tex = tex[:-2] if tex.endswith("$$") else tex
            blocks.append(("math", None, render_math(tex, warnings, display=True)))
            continue
        heading = re.match(r"(#{1,6})\s+(.*)", s)
        if heading:
            blocks.append(("heading", heading.group(2), f"<h4>{render_inline(heading.group(2), warnings)}</h4>"))
            i += 1
            continue
        if s.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append(lines[i])
                i += 1
            head, body, table = _table(rows, warnings)
            blocks.append(("table", (head, body), table))
            continue
        if s.startswith(">"):
            quote = []
            while i < len(lines) and lines[i].strip().startswith(">"):
                quote.append(lines[i].strip()[1:].strip())
                i += 1
            blocks.append(("quote", None, f"<blockquote>{render_inline(' '.join(quote), warnings)}</blockquote>"))
            continue
        if _ITEM.match(line):
            items = []
            while i < len(lines):
                m = _ITEM.match(lines[i])
                if m:
                    items.append([len(m.group(1)), m.group(2)[0].isdigit(), m.group(3).strip()])
                elif lines[i].strip() and (lines[i][:1].isspace() or not _starts_block(lines[i])):
                    items[-1][2] += " " + lines[i].strip()  # continuation line of the item
                elif not lines[i].strip() and i + 1 < len(lines) and lines[i + 1][:1].isspace() \
                        and lines[i + 1].strip():
                    pass  # a blank line inside an item whose text goes on, indented
                else:
                    break
                i += 1
            top = min(it[0] for it in items)
            blocks.append(("list", [it[2] for it in items if it[0] == top], _list_html(items, warnings)))
            continue
        para = []
        while i < len(lines) and lines[i].strip() and (not para or not _starts_block(lines[i])):
            para.append(lines[i].strip())
            i += 1
        text_ = " ".join(para)
        blocks.append(("p", text_, f"<p>{render_inline(text_, warnings)}</p>"))
    return blocks


# ------------------------------------------------------------------------------------------ cards
@dataclass
class Card:
    id: str
    notebook: object          # course.Notebook
    title: str                # the question, as written (Markdown inline)
    section: str              # the notebook section that answers it ("" before the first ## heading)
    short_html: str           # the 30-second answer
    details_html: str         # the bullets and anything after them
    difficulty: str
    warnings: list = field(default_factory=list)

    @property
    def title_html(self):
        return render_inline(self.title)


def make_card(qid, source, notebook, section="", where="<cell>"):
    """One card from the Markdown source of a `question:<id>` cell."""
    lines = source.strip().splitlines()
    if not lines or not re.match(r"###\s+\S", lines[0].strip()):
        first = lines[0].strip()[:60] if lines else "(empty cell)"
        raise CardsError(f"{where}: question:{qid} must start with the question as a `### ` heading, "
                         f"found {first!r}")
    if qid not in DIFFICULTY or DIFFICULTY[qid] not in LEVELS:
        raise CardsError(f"{where}: question:{qid} has no difficulty in autograde/course.py DIFFICULTY "
                         f"(one of {', '.join(LEVELS)})")
    warnings = []
    title = re.sub(r"^###\s+", "", lines[0].strip())
    blocks = parse_blocks("\n".join(lines[1:]), warnings)
    n_short = next((k for k, b in enumerate(blocks) if b[0] != "p"), len(blocks))
    card = Card(qid, notebook, title, section, "".join(b[2] for b in blocks[:n_short]),
                "".join(b[2] for b in blocks[n_short:]), DIFFICULTY[qid], warnings)
    render_inline(title, warnings)
    if not card.short_html and not card.details_html:
        raise CardsError(f"{where}: question:{qid} has a question but no answer")
    return card


def _summary_checklist(nb_source, warnings):
    """Checklist items (HTML) from the `## Summary` section of one notebook, or None when it has none."""
    for cell in nb_source.cells:
        if cell.cell_type != "markdown":
            continue
        text = cell.source
        m = re.search(r"^##\s+Summary\b.*$", text, re.M | re.I)
        if not m:
            continue
        body = text[m.end():]
        body = re.split(r"^#{1,2}\s", body, maxsplit=1, flags=re.M)[0]
        items = []
        for kind, data, _ in parse_blocks(body, warnings):
            if kind == "table":
                head, rows = data
                for row in rows:
                    first = f"<strong>{render_inline(row[0], warnings)}</strong>"
                    rest = []
                    for k, value in enumerate(row[1:], 1):
                        label = head[k] if head and k < len(head) and head[k] else ""
                        label = f'<span class="lbl">{render_inline(label, warnings)}:</span> ' if label else ""
                        rest.append(label + render_inline(value, warnings))
                    items.append(first + (" — " + " · ".join(rest) if rest else ""))
            elif kind == "list":
                items.extend(render_inline(t, warnings) for t in data)
            elif kind == "p" and not re.match(r"\W*(questions answered|next\b)", data, re.I) \
                    and "questions answered" not in data.lower():
                items.append(render_inline(data, warnings))
        return items or None
    return None


@dataclass
class Deck:
    cards: list
    checklists: dict          # notebook number -> [item HTML]
    written: list             # the course.Notebook entries whose source exists
    warnings: list


def collect(sources=None):
    """Read every written notebook source: the cards in notebook and cell order, and the checklists."""
    sources = Path(SOURCES if sources is None else sources)
    if not sources.is_dir():
        raise CardsError(f"no notebook sources: {sources} is not a folder")
    planned = {nb.name: nb for nb in NOTEBOOKS}
    cards, checklists, written, warnings, seen = [], {}, [], [], {}
    for path in sorted(sources.glob("[0-9][0-9]_*.py")):
        nb = planned.get(path.stem)
        if nb is None:
            raise CardsError(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: "
                             "not a notebook of the course plan (autograde/course.py NOTEBOOKS)")
        where = f"solutions/notebooks/{path.name}"
        try:
            source = load_source_notebook(path)
        except BuildError:
            raise
        except Exception as exc:  # jupytext: a malformed file
            raise CardsError(f"{where}: cannot be read as a jupytext notebook: {exc}") from None
        written.append(nb)
        try:
            mine, items = _cards_of(source, nb, where, seen, warnings)
        except (CardsError, BuildError):
            raise
        except Exception as exc:  # a construct the Markdown/LaTeX converter cannot handle: name the file
            raise CardsError(f"{where}: cannot make its cards ({type(exc).__name__}: {exc})") from None
        cards.extend(mine)
        checklists[nb.number] = items if items is not None else [c.title_html for c in mine]
    return Deck(cards, checklists, written, warnings)


def _cards_of(source, nb, where, seen, warnings):
    """The cards of one notebook source, in cell order, and its Summary checklist (None without one)."""
    section, mine = "", []
    for index, cell in enumerate(source.cells):
        if cell.cell_type == "markdown":
            headings = re.findall(r"^##\s+(.+?)\s*#*\s*$", cell.source, re.M)
        else:
            headings = []
        qids = [t.split(":", 1)[1] for t in cell_tags(cell) if t.startswith("question:")]
        for qid in qids:
            if qid in seen:
                raise CardsError(f"{where}: question:{qid} is also tagged in {seen[qid]}")
            if qid not in ALL_QUESTIONS:
                raise CardsError(f"{where}: question:{qid} is not a question of the course plan")
            if cell.cell_type != "markdown":
                raise CardsError(f"{where}: cell {index}: question:{qid} must be a markdown cell")
            seen[qid] = where
            card = make_card(qid, cell.source, nb, section, where=f"{where}: cell {index}")
            warnings.extend(f"{where}: question:{qid}: unknown LaTeX {w} shown as written"
                            for w in card.warnings)
            mine.append(card)
        if headings and not qids:
            section = headings[-1]
    return mine, _summary_checklist(source, warnings)


# ------------------------------------------------------------------------------------------- page
def _anchor(heading):
    """JupyterLab's (and nbconvert's) id for a heading: its text with spaces as '-'."""
    plain = re.sub(r"[`*$]", "", heading).strip()
    return "#" + re.sub(r"\s", "-", plain)


def _href(path):
    return "/".join(html.escape(part, quote=True) for part in path.split("/"))


_CSS = r"""
:root{--bg:#f6f7f9;--card:#fff;--ink:#1f2328;--muted:#59636e;--line:#d5dae0;--easy:#1a7f37;--easy-bg:#dafbe1;
--medium:#9a6700;--medium-bg:#fff1c2;--hard:#cf222e;--hard-bg:#ffe0e0;--accent:#0969da}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif}
header.top{padding:18px 24px 6px;max-width:1100px;margin:0 auto}
h1{font-size:1.45rem;margin:0 0 4px}
.sub{color:var(--muted);margin:0}
.toolbar{position:sticky;top:0;z-index:5;background:rgba(246,247,249,.96);border-bottom:1px solid var(--line);
backdrop-filter:blur(3px)}
.toolbar-in{max-width:1100px;margin:0 auto;padding:8px 24px;display:flex;flex-wrap:wrap;gap:6px 14px;align-items:center}
.group{display:flex;flex-wrap:wrap;gap:4px;align-items:center}
.group>span.gl{font-size:.8rem;color:var(--muted);margin-right:2px}
button{font:inherit;font-size:.85rem;cursor:pointer;border:1px solid var(--line);background:#fff;color:var(--ink);
border-radius:999px;padding:2px 10px}
button:hover{border-color:#8c959f}
button[aria-pressed=true]{background:var(--ink);color:#fff;border-color:var(--ink)}
.f-nb::before{content:"";display:inline-block;width:9px;height:9px;border-radius:50%;background:var(--nb);
margin-right:5px;vertical-align:0}
.f-nb[aria-pressed=true]{background:var(--nb);border-color:var(--nb)}
.f-nb[aria-pressed=true]::before{background:#fff}
.f-diff[data-difficulty=Easy][aria-pressed=true]{background:var(--easy);border-color:var(--easy)}
.f-diff[data-difficulty=Medium][aria-pressed=true]{background:var(--medium);border-color:var(--medium)}
.f-diff[data-difficulty=Hard][aria-pressed=true]{background:var(--hard);border-color:var(--hard)}
#drill-toggle{font-weight:600}
#drill-toggle[aria-pressed=true]{background:var(--accent);border-color:var(--accent)}
select{font:inherit;font-size:.85rem;border:1px solid var(--line);border-radius:6px;padding:1px 4px;background:#fff}
.stats{font-size:.85rem;color:var(--muted);display:flex;gap:10px;align-items:center;flex-wrap:wrap}
.bar{display:inline-block;width:120px;height:8px;border-radius:4px;background:#e4e7eb;overflow:hidden;
vertical-align:middle}
.bar>i{display:block;height:100%;background:var(--easy)}
.keys{font-size:.8rem;color:var(--muted);max-width:1100px;margin:0 auto;padding:4px 24px 0}
kbd{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;border:1px solid var(--line);border-bottom-width:2px;
border-radius:4px;padding:0 4px;background:#fff;color:var(--ink)}
main{max-width:1100px;margin:0 auto;padding:8px 24px 40px}
section.nb>h2{font-size:1.1rem;margin:22px 0 8px;padding-left:10px;border-left:6px solid var(--nb)}
section.nb>h2 small{color:var(--muted);font-weight:normal}
.card{background:var(--card);border:1px solid var(--line);border-left:6px solid var(--nb);border-radius:8px;
padding:10px 14px 10px;margin:0 0 10px;box-shadow:0 1px 2px rgba(0,0,0,.04);outline:none;scroll-margin-top:8rem}
.card.current{box-shadow:0 0 0 3px color-mix(in srgb,var(--nb) 35%,transparent)}
.card-head{display:flex;gap:8px;align-items:baseline;flex-wrap:wrap}
.card h3{font-size:1.02rem;margin:0;flex:1 1 60%;cursor:default}
body.drill .card h3{cursor:pointer}
.qid{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;color:var(--muted)}
.chip{font-size:.75rem;font-weight:600;border-radius:999px;padding:1px 9px;white-space:nowrap}
.chip.Easy{color:var(--easy);background:var(--easy-bg)}
.chip.Medium{color:var(--medium);background:var(--medium-bg)}
.chip.Hard{color:var(--hard);background:var(--hard-bg)}
.label{display:block;font-size:.72rem;text-transform:uppercase;letter-spacing:.05em;color:var(--muted);margin-top:6px}
.short p{margin:2px 0 6px}
.more ul,.more ol{margin:4px 0 6px;padding-left:22px}
.more li{margin:2px 0}
.answer p{margin:4px 0}
.src{font-size:.82rem;color:var(--muted);margin-top:6px}
.src a{color:var(--accent)}
.card-foot{display:flex;gap:6px;align-items:center;margin-top:6px;flex-wrap:wrap}
.reveal{display:none}
body.drill .reveal{display:inline-block}
body.drill .card:not(.revealed) .answer{display:none}
.mark-knew[aria-pressed=true]{background:var(--easy);border-color:var(--easy)}
.mark-review[aria-pressed=true]{background:var(--hard);border-color:var(--hard)}
.card[data-mark=knew]{background:linear-gradient(90deg,#f3fbf5,#fff 40%)}
.card[data-mark=review]{background:linear-gradient(90deg,#fff4f4,#fff 40%)}
code{font:.88em ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#eff1f3;border-radius:4px;padding:0 3px}
pre{background:#f3f4f6;border-radius:6px;padding:8px 10px;overflow:auto}
pre code{background:none;padding:0}
.math{font-family:"STIX Two Math","Cambria Math","Latin Modern Math","DejaVu Serif","Times New Roman",serif;
font-size:1.06em;white-space:nowrap}
.math.display{display:block;text-align:center;margin:6px 0;white-space:normal}
.math sub,.math sup{font-size:.72em}
.math .fn,.math .rm{font-style:normal}
.math .tt{font-family:ui-monospace,Menlo,Consolas,monospace}
.math .cal{font-family:cursive}
.math .tex{font:.85em ui-monospace,Menlo,Consolas,monospace;color:#8250df}
.frac{display:inline-flex;flex-direction:column;vertical-align:middle;text-align:center;font-size:.85em;margin:0 2px}
.frac>.num{border-bottom:1px solid currentColor;padding:0 2px}
.frac>span{line-height:1.15}
.sqrt .rad{border-top:1px solid currentColor;padding-top:1px}
.over{border-top:1px solid currentColor}
.line{border-bottom:1px solid currentColor}
table{border-collapse:collapse;font-size:.9em;margin:6px 0}
th,td{border:1px solid var(--line);padding:2px 6px;text-align:left;vertical-align:top}
.checklist{background:var(--card);border:1px dashed var(--nb);border-radius:8px;padding:6px 14px;margin:4px 0 14px}
.checklist summary{cursor:pointer;font-weight:600}
.checklist ul{list-style:none;padding-left:0;margin:6px 0}
.checklist li{margin:3px 0;display:flex;gap:8px;align-items:flex-start}
.checklist li input{margin-top:4px}
.checklist .lbl{color:var(--muted);font-size:.9em}
.empty{color:var(--muted);font-style:italic}
.note{color:var(--hard);font-size:.85rem}
@media (max-width:640px){.toolbar-in,main,header.top,.keys{padding-left:10px;padding-right:10px}}
@media print{
  *{-webkit-print-color-adjust:exact;print-color-adjust:exact}
  body{background:#fff;font-size:11pt}
  .toolbar,.keys,.card-foot,.reveal{display:none!important}
  body.drill .card .answer{display:block!important}
  .card,.checklist{break-inside:avoid;page-break-inside:avoid;box-shadow:none}
  .checklist{display:block}
  section.nb>h2{break-after:avoid;page-break-after:avoid}
  a{color:inherit;text-decoration:none}
  main{max-width:none;padding:0}
}
"""

_JS = r"""
(function () {
  "use strict";
  var PREFIX = "attnlab-cards/v1/";
  var memory = {};
  var store = (function () {
    try {
      var k = PREFIX + "probe";
      window.localStorage.setItem(k, "1");
      window.localStorage.removeItem(k);
      return window.localStorage;
    } catch (e) { return null; }
  })();
  function load(name) {
    try { return JSON.parse((store ? store.getItem(PREFIX + name) : memory[name]) || "{}") || {}; }
    catch (e) { return {}; }
  }
  function save(name, value) {
    var text = JSON.stringify(value);
    if (store) { try { store.setItem(PREFIX + name, text); return; } catch (e) { /* full: keep in memory */ } }
    memory[name] = text;
  }
  if (!store) { document.getElementById("storage-note").hidden = false; }

  var body = document.body;
  var cards = Array.prototype.slice.call(document.querySelectorAll(".card"));
  var sections = Array.prototype.slice.call(document.querySelectorAll("section.nb"));
  var marks = load("marks");
  var ticks = load("checklist");
  var filters = { nb: {}, difficulty: {}, mark: "all" };
  var current = null;

  function pressed(buttons) {
    var on = {};
    buttons.forEach(function (b) { if (b.getAttribute("aria-pressed") === "true") { on[b.dataset.value] = true; } });
    return on;
  }
  function any(obj) { for (var k in obj) { if (obj.hasOwnProperty(k)) { return true; } } return false; }
  var nbButtons = Array.prototype.slice.call(document.querySelectorAll(".f-nb"));
  var diffButtons = Array.prototype.slice.call(document.querySelectorAll(".f-diff"));
  var markSelect = document.getElementById("f-mark");

  function visible(card) { return !card.hidden; }
  function apply() {
    filters.nb = pressed(nbButtons);
    filters.difficulty = pressed(diffButtons);
    filters.mark = markSelect.value;
    var shown = 0;
    cards.forEach(function (card) {
      var mark = marks[card.dataset.id] || "none";
      var ok = (!any(filters.nb) || filters.nb[card.dataset.nb]) &&
               (!any(filters.difficulty) || filters.difficulty[card.dataset.difficulty]) &&
               (filters.mark === "all" || filters.mark === mark);
      card.hidden = !ok;
      if (ok) { shown += 1; }
    });
    sections.forEach(function (s) {
      var nbOk = !any(filters.nb) || filters.nb[s.dataset.nb];
      var hasCards = s.querySelector(".card:not([hidden])") !== null;
      s.hidden = !(nbOk && (hasCards || (!any(filters.difficulty) && filters.mark === "all")));
    });
    document.getElementById("visible-count").textContent = String(shown);
    document.getElementById("no-match").hidden = shown > 0;
    if (current && current.hidden) { setCurrent(null); }
  }
  function progress() {
    var knew = 0, review = 0;
    cards.forEach(function (card) {
      var m = marks[card.dataset.id];
      if (m === "knew") { knew += 1; } else if (m === "review") { review += 1; }
    });
    document.getElementById("count-knew").textContent = String(knew);
    document.getElementById("count-review").textContent = String(review);
    document.getElementById("count-left").textContent = String(cards.length - knew - review);
    document.getElementById("bar-knew").style.width = (cards.length ? 100 * knew / cards.length : 0) + "%";
  }
  function showMark(card) {
    var m = marks[card.dataset.id] || "none";
    card.dataset.mark = m;
    card.querySelector(".mark-knew").setAttribute("aria-pressed", String(m === "knew"));
    card.querySelector(".mark-review").setAttribute("aria-pressed", String(m === "review"));
  }
  function setMark(card, mark) {
    if (!mark || marks[card.dataset.id] === mark) { delete marks[card.dataset.id]; }
    else { marks[card.dataset.id] = mark; }
    save("marks", marks);
    showMark(card);
    progress();
    if (filters.mark !== "all") { apply(); }
  }
  function reveal(card, on) {
    if (on === undefined) { on = !card.classList.contains("revealed"); }
    card.classList.toggle("revealed", on);
    var button = card.querySelector(".reveal");
    button.textContent = on ? "Hide answer" : "Show answer";
    button.setAttribute("aria-expanded", String(on));
  }
  function setCurrent(card, focus) {
    if (current) { current.classList.remove("current"); }
    current = card;
    if (card) {
      card.classList.add("current");
      if (focus !== false) { card.focus({ preventScroll: true }); card.scrollIntoView({ block: "nearest" }); }
    }
  }
  function step(delta) {
    var shown = cards.filter(visible);
    if (!shown.length) { return; }
    var at = shown.indexOf(current);
    var next = at < 0 ? (delta > 0 ? 0 : shown.length - 1) : Math.min(shown.length - 1, Math.max(0, at + delta));
    setCurrent(shown[next]);
  }
  function setDrill(on) {
    body.classList.toggle("drill", on);
    document.getElementById("drill-toggle").setAttribute("aria-pressed", String(on));
    if (on) { cards.forEach(function (c) { reveal(c, false); }); }
  }

  nbButtons.concat(diffButtons).forEach(function (b) {
    b.addEventListener("click", function () {
      b.setAttribute("aria-pressed", String(b.getAttribute("aria-pressed") !== "true"));
      apply();
    });
  });
  markSelect.addEventListener("change", apply);
  document.getElementById("clear-filters").addEventListener("click", function () {
    nbButtons.concat(diffButtons).forEach(function (b) { b.setAttribute("aria-pressed", "false"); });
    markSelect.value = "all";
    apply();
  });
  document.getElementById("drill-toggle").addEventListener("click", function () {
    setDrill(!body.classList.contains("drill"));
  });
  document.getElementById("reset-marks").addEventListener("click", function () {
    if (!window.confirm("Forget every knew it / review again mark?")) { return; }
    marks = {};
    save("marks", marks);
    cards.forEach(showMark);
    progress();
    apply();
  });
  cards.forEach(function (card) {
    showMark(card);
    card.querySelector(".reveal").addEventListener("click", function (e) {
      e.stopPropagation(); setCurrent(card, false); reveal(card);
    });
    card.querySelector("h3").addEventListener("click", function () {
      if (body.classList.contains("drill")) { setCurrent(card, false); reveal(card); }
    });
    ["knew", "review"].forEach(function (mark) {
      card.querySelector(".mark-" + mark).addEventListener("click", function () {
        setCurrent(card, false); setMark(card, mark);
      });
    });
    card.addEventListener("focusin", function () { if (current !== card) { setCurrent(card, false); } });
  });
  Array.prototype.slice.call(document.querySelectorAll(".checklist input")).forEach(function (box) {
    box.checked = !!ticks[box.dataset.key];
    box.addEventListener("change", function () {
      if (box.checked) { ticks[box.dataset.key] = 1; } else { delete ticks[box.dataset.key]; }
      save("checklist", ticks);
    });
  });

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) { return; }
    var target = e.target;
    var tag = target && target.tagName;
    if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") { return; }
    var onControl = tag === "BUTTON" || tag === "A" || tag === "SUMMARY";
    var key = e.key;
    var drill = body.classList.contains("drill");
    if (key === "d" || key === "D") { setDrill(!drill); e.preventDefault(); return; }
    if (key === "j" || key === "n") { step(1); e.preventDefault(); return; }
    if (key === "k" || key === "p") { step(-1); e.preventDefault(); return; }
    if (key === "Escape") { cards.forEach(function (c) { reveal(c, false); }); return; }
    if ((key === " " || key === "Enter") && !onControl && drill) {  // outside drill mode Space scrolls
      if (!current || current.hidden) { step(1); }
      if (current) { reveal(current); e.preventDefault(); }
      return;
    }
    if (key === "1" || key === "2" || key === "0") {
      if (!current || current.hidden) { step(1); }
      if (!current) { return; }
      var card = current;
      setMark(card, key === "1" ? "knew" : key === "2" ? "review" : null);
      if (drill && key !== "0") { step(1); }
      e.preventDefault();
    }
  });

  setDrill(false);
  apply();
  progress();
  body.dataset.ready = "true";
})();
"""


def render_page(deck, out_path=DEFAULT_OUT):
    """The whole page as a string (deterministic: the same sources give the same bytes)."""
    out_dir = Path(out_path).resolve().parent
    by_nb = {}
    for card in deck.cards:
        by_nb.setdefault(card.notebook.number, []).append(card)
    counts = {level: sum(c.difficulty == level for c in deck.cards) for level in LEVELS}
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="generator" content="attnlab cards (autograde/cards.py)">',
        '<link rel="icon" href="data:,">',
        "<title>Attention: interview review deck</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        "<!-- Generated by `attnlab cards` from the question cells of solutions/notebooks/*.py. "
        "Do not edit: edit the notebook source and regenerate. -->",
        '<header class="top">',
        "<h1>Attention, from Intuition to Kernels: interview review deck</h1>",
        f'<p class="sub">{len(deck.cards)} of the course\'s {len(ALL_QUESTIONS)} interview questions, '
        f"answered in {len(deck.written)} of {len(NOTEBOOKS)} notebooks "
        f"({counts['Easy']} Easy, {counts['Medium']} Medium, {counts['Hard']} Hard). "
        "Each answer links to the notebook section that shows the evidence.</p>",
        "</header>",
        '<div class="toolbar" role="toolbar" aria-label="Filters and drill mode"><div class="toolbar-in">',
        '<div class="group" id="filter-nb"><span class="gl">Notebook</span>',
    ]
    for nb in deck.written:
        colour = COLOURS[(nb.number - 1) % len(COLOURS)]
        parts.append(f'<button class="f-nb" type="button" aria-pressed="false" data-value="{nb.number}" '
                     f'style="--nb:{colour}" title="{esc(nb.title)}">{nb.number:02d}</button>')
    parts.append('</div><div class="group" id="filter-difficulty"><span class="gl">Difficulty</span>')
    for level in LEVELS:
        parts.append(f'<button class="f-diff" type="button" aria-pressed="false" data-value="{level}" '
                     f'data-difficulty="{level}">{level}</button>')
    parts += [
        '</div><div class="group"><span class="gl">Show</span><select id="f-mark" aria-label="Filter by mark">'
        '<option value="all">all cards</option><option value="none">not marked yet</option>'
        '<option value="review">review again</option><option value="knew">knew it</option></select>'
        '<button type="button" id="clear-filters">Clear filters</button></div>',
        '<div class="group"><button type="button" id="drill-toggle" aria-pressed="false" '
        'title="Hide the answers (key d)">Drill mode</button></div>',
        '<div class="stats"><span><b id="visible-count">0</b> shown</span>'
        '<span title="Marks are kept in this browser (localStorage)">'
        '<span class="bar" aria-hidden="true"><i id="bar-knew"></i></span> '
        '<b id="count-knew">0</b> knew it · <b id="count-review">0</b> review again · '
        f'<b id="count-left">{len(deck.cards)}</b> not marked</span>'
        '<button type="button" id="reset-marks">Reset marks</button></div>',
        '<span class="note" id="storage-note" hidden>This browser blocks storage for this page: '
        "marks last until you close it.</span>",
        "</div></div>",
        '<p class="keys">Keys: <kbd>d</kbd> drill mode (answers hidden) · <kbd>j</kbd>/<kbd>k</kbd> next / '
        "previous card · <kbd>Space</kbd> or <kbd>Enter</kbd> show / hide the answer in drill mode (or click the "
        "question) · "
        "<kbd>1</kbd> knew it · <kbd>2</kbd> review again · <kbd>0</kbd> clear the mark · <kbd>Esc</kbd> hide "
        "all answers. Filters combine; none pressed shows everything. Print prints the shown cards with "
        "their answers.</p>",
        "<main>",
        '<p class="empty" id="no-match" hidden>No card matches these filters.</p>',
    ]
    for nb in deck.written:
        colour = COLOURS[(nb.number - 1) % len(COLOURS)]
        mine = by_nb.get(nb.number, [])
        notebook_file = ROOT / "notebooks" / f"{nb.name}.ipynb"
        rel = Path(os.path.relpath(notebook_file, out_dir)).as_posix()
        parts.append(f'<section class="nb" data-nb="{nb.number}" style="--nb:{colour}">')
        parts.append(f"<h2>{nb.number:02d} · {esc(nb.title)} <small>{len(mine)} "
                     f"card{'s' if len(mine) != 1 else ''} · "
                     f'<a href="{_href(rel)}">notebooks/{esc(nb.name)}.ipynb</a></small></h2>')
        for card in mine:
            where = f"notebooks/{nb.name}.ipynb"
            section = (f" · § {render_inline(card.section)}" if card.section else "")
            href = _href(rel) + (esc(_anchor(card.section), quote=True) if card.section else "")
            parts += [
                f'<article class="card" id="card-{card.id}" data-id="{card.id}" data-nb="{nb.number}" '
                f'data-difficulty="{card.difficulty}" tabindex="0">',
                '<div class="card-head">',
                f'<span class="qid" title="question {card.id} of the course plan">{card.id}</span>',
                f'<span class="chip {card.difficulty}">{card.difficulty}</span>',
                f"<h3>{card.title_html}</h3>",
                "</div>",
                '<div class="answer">',
                (f'<div class="short"><span class="label">30-second answer</span>{card.short_html}</div>'
                 if card.short_html else ""),
                f'<div class="more">{card.details_html}</div>' if card.details_html else "",
                f'<div class="src">Evidence: <a href="{href}">{esc(where)}</a>{section}</div>',
                "</div>",
                '<div class="card-foot">',
                '<button type="button" class="reveal" aria-expanded="false">Show answer</button>',
                '<button type="button" class="mark-knew" aria-pressed="false">Knew it</button>',
                '<button type="button" class="mark-review" aria-pressed="false">Review again</button>',
                "</div>",
                "</article>",
            ]
        items = deck.checklists.get(nb.number) or []
        if items:
            parts.append(f'<details class="checklist" open><summary>Quick-review checklist: '
                         f"{esc(nb.title)}</summary><ul>")
            for item in items:
                key = hashlib.sha1(f"{nb.number}:{item}".encode()).hexdigest()[:10]
                parts.append(f'<li><input type="checkbox" data-key="{key}" aria-label="reviewed">'
                             f"<span>{item}</span></li>")
            parts.append("</ul></details>")
        parts.append("</section>")
    parts += ["</main>", f"<script>{_JS}</script>", "</body>", "</html>", ""]
    return "\n".join(p for p in parts if p != "")


def generate(out_path=DEFAULT_OUT, sources=None):
    """(page text, deck) for the current sources."""
    deck = collect(sources)
    return render_page(deck, out_path), deck


# -------------------------------------------------------------------------------------------- CLI
class _Usage(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise _Usage(message)


def _parser():
    p = _Parser(prog="attnlab cards", description="Write the interview review deck: one static HTML page "
                "generated from the question cells of the notebooks (see autograde/cards.py).")
    p.add_argument("--out", metavar="FILE", default=None,
                   help="where to write the page (default: docs/cards.html in the course)")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 when FILE differs from a fresh generation")
    return p


def _what_changed(old, new):
    """A short account of how two pages differ: cards added, removed or changed, else the rest."""
    def blocks(page):
        return dict(re.findall(r'<article class="card" id="card-([\w-]+)"(.*?)</article>', page, re.S))

    before, after = blocks(old), blocks(new)
    parts = []
    for label, ids in (("new", [i for i in after if i not in before]),
                       ("removed", [i for i in before if i not in after]),
                       ("changed", [i for i in after if i in before and before[i] != after[i]])):
        if ids:
            parts.append(f"{label}: {', '.join(ids[:6])}{' ...' if len(ids) > 6 else ''}")
    summary = "; ".join(parts) or "the checklists, layout or script changed"
    return f"{len(before)} cards on the page, {len(after)} in the notebook sources; {summary}"


def main(argv=None, out=print, err=None):
    """`attnlab cards [--out FILE] [--check]`. Returns the exit status (0, 1 stale, 2 bad input)."""
    if err is None:
        def err(message):
            sys.stderr.write(message + "\n")
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser().parse_args(argv)
    except _Usage as exc:
        err(f"attnlab cards: {exc} (see `attnlab cards --help`)")
        return 2
    except SystemExit as exc:  # --help printed its text
        return int(exc.code or 0)
    target = Path(args.out).expanduser() if args.out else DEFAULT_OUT
    target = target if target.is_absolute() else Path.cwd() / target
    shown = os.path.relpath(target) if args.out else "docs/cards.html"
    shown = str(target) if shown.startswith("..") else shown
    if target.is_dir():
        err(f"attnlab cards: --out {shown} is a folder; give a file name such as {shown}/cards.html")
        return 2
    if args.check and not target.is_file():
        err(f"attnlab cards: {shown} does not exist: run `attnlab cards` and commit it")
        return 1
    try:
        page, deck = generate(target)
    except (CardsError, BuildError) as exc:
        err(f"attnlab cards: {exc}")
        return 2
    for warning in deck.warnings:
        err(f"attnlab cards: warning: {warning}")
    planned = len(ALL_QUESTIONS)
    summary = (f"{len(deck.cards)} cards from {len(deck.written)} of {len(NOTEBOOKS)} notebooks "
               f"({planned} planned), {len(page.encode()):,} bytes")
    if args.check:
        try:
            current = target.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            err(f"attnlab cards: cannot read {shown}: {exc}")
            return 2
        if current != page:
            err(f"attnlab cards: {shown} is out of date ({_what_changed(current, page)}): "
                "run `attnlab cards` and commit the result")
            return 1
        out(f"{shown} is up to date: {summary}")
        return 0
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        old = target.read_text(encoding="utf-8") if target.exists() else None
        if old != page:
            tmp = target.with_name(target.name + ".tmp")
            tmp.write_text(page, encoding="utf-8")
            os.replace(tmp, target)
    except OSError as exc:
        err(f"attnlab cards: cannot write {shown}: {exc.strerror or exc}")
        return 2
    out(f"{'wrote' if old != page else 'unchanged'} {shown}: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
