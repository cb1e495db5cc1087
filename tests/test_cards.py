"""The interview review deck (`attnlab cards`, autograde/cards.py): generated, fresh, and working in a browser.

The browser test saves its screenshot (drill mode, filters on) to docs/cards.png when that file is missing
or ATTNLAB_SCREENSHOTS=1 is set (to refresh the committed one), otherwise into the test's tmp folder, so
that `make test` never rewrites a committed binary.
"""
import os
import re
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from autograde import build, cards
from autograde.course import ALL_QUESTIONS, DIFFICULTY, NOTEBOOKS
from browser import chromium, console_errors
from conftest import ROOT

PAGE = ROOT / "docs" / "cards.html"
SCREENSHOT = ROOT / "docs" / "cards.png"
SEED = ROOT.parent / "shared" / "seeds" / "000_07c87db1aaf45abd.txt"


def _tagged_questions():
    """The question ids tagged in the notebook sources, read with build's parser (not the deck's code)."""
    ids = []
    for path in sorted((ROOT / "solutions" / "notebooks").glob("[0-9][0-9]_*.py")):
        for cell in build.load_source_notebook(path).cells:
            ids += [t.split(":", 1)[1] for t in build.cell_tags(cell) if t.startswith("question:")]
    return ids


@pytest.fixture(scope="module")
def deck():
    return cards.collect()


# ------------------------------------------------------------------------------ one source, fresh
def test_committed_page_equals_a_fresh_generation():
    lines = []
    status = cards.main(["--check"], out=lines.append, err=lines.append)
    assert status == 0, "\n".join(lines)
    assert "docs/cards.html is up to date" in lines[-1]


def test_one_card_per_tagged_question_and_all_65_once_every_notebook_exists(deck):
    tagged = _tagged_questions()
    assert [c.id for c in deck.cards] == tagged
    assert len(set(tagged)) == len(tagged)
    if all((ROOT / "solutions" / "notebooks" / f"{nb.name}.py").exists() for nb in NOTEBOOKS):
        assert len(deck.cards) == len(ALL_QUESTIONS) == 65
    assert PAGE.read_text(encoding="utf-8").count('<article class="card"') == len(tagged)


def test_every_question_has_a_difficulty_and_the_qa_cards_keep_the_seed_s():
    assert set(DIFFICULTY) == set(ALL_QUESTIONS)
    assert set(DIFFICULTY.values()) <= {"Easy", "Medium", "Hard"}
    if not SEED.exists():
        pytest.skip(f"{SEED} is not here (it is read only to check the copied table)")
    seed = dict(re.findall(r"^(\d+) .*?(Easy|Medium|Hard)\s*$", SEED.read_text(encoding="utf-8"), re.M))
    assert len(seed) == 15
    assert {f"qa-{n}": level for n, level in seed.items()} == {k: v for k, v in DIFFICULTY.items()
                                                              if k.startswith("qa-")}


def test_each_card_has_a_30_second_answer_a_notebook_link_and_a_section(deck):
    page = PAGE.read_text(encoding="utf-8")
    for card in deck.cards:
        assert card.short_html.startswith("<p>"), f"{card.id}: no answer paragraph before the bullets"
        assert card.section, f"{card.id}: no ## section above the question cell"
        block = page.split(f'id="card-{card.id}"', 1)[1].split("</article>", 1)[0]
        assert f'href="../notebooks/{card.notebook.name}.ipynb#' in block
        assert f'<span class="chip {card.difficulty}">{card.difficulty}</span>' in block


def test_no_unknown_latex_and_nothing_fetched_from_the_network(deck):
    assert deck.warnings == []
    page = PAGE.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "the page must work offline"
    assert "@import" not in page and "url(http" not in page


def test_checklists_come_from_the_summary_sections(deck):
    first = deck.checklists[1]
    assert any(item.startswith("<strong>scores</strong>") for item in first), first
    assert not any("Questions answered" in item or item.startswith("Next") for items in deck.checklists.values()
                   for item in items)


def test_the_page_is_well_formed():
    class Tags(HTMLParser):
        def __init__(self):
            super().__init__()
            self.open, self.errors = [], []

        def handle_starttag(self, tag, attrs):
            if tag not in {"meta", "link", "br", "input", "img", "hr"}:
                self.open.append(tag)

        def handle_endtag(self, tag):
            if self.open and self.open[-1] == tag:
                self.open.pop()
            else:
                self.errors.append((tag, self.getpos(), self.open[-3:]))

    parser = Tags()
    parser.feed(PAGE.read_text(encoding="utf-8"))
    assert parser.errors == [] and parser.open == []


# --------------------------------------------------------------------------------- generator units
SOURCE = r"""### Why <b>scale</b> & when?

Divide by $\sqrt{D}$ so that $q \cdot k / \sqrt{D}$ has unit variance when $a<b$ & `x < y && z`.
A second line of the **same** paragraph.

- first bullet with $\alpha_{ij} = e^{s_{ij}} / \sum_{j'} e^{s_{ij'}}$
  continued on an indented line
- second bullet <script>alert(1)</script>
  - a nested bullet

$$\mathrm{softmax}(QK^\top/\sqrt{D})\,V$$

```python
if a < b and c > d: pass
```
"""


def test_a_card_s_parts():
    nb = NOTEBOOKS[1]
    card = cards.make_card("qa-3", SOURCE, nb, section="2. The formula")
    assert card.title_html == "Why &lt;b&gt;scale&lt;/b&gt; &amp; when?"
    assert card.difficulty == "Medium" and card.section == "2. The formula"
    # the 30-second answer: the first paragraph, its two lines joined
    assert card.short_html.startswith("<p>Divide by ") and card.short_html.count("<p>") == 1
    assert "<strong>same</strong> paragraph.</p>" in card.short_html
    # the bullets, with a continuation line and a nested list; then display math and code
    assert card.details_html.startswith("<ul><li>first bullet")
    assert "continued on an indented line</li>" in card.details_html
    assert "<ul><li>a nested bullet</li></ul></li></ul>" in card.details_html
    assert '<div class="math display">' in card.details_html
    assert '<pre><code class="language-python">if a &lt; b and c &gt; d: pass</code></pre>' in card.details_html
    assert card.warnings == []


def test_escaping_of_text_code_and_math():
    card = cards.make_card("qa-3", SOURCE, NOTEBOOKS[1])
    everything = card.title_html + card.short_html + card.details_html
    assert "<script>" not in everything and "&lt;script&gt;alert(1)&lt;/script&gt;" in everything
    assert "<b>scale" not in everything
    assert "<code>x &lt; y &amp;&amp; z</code>" in card.short_html
    assert "&amp; <code>" in card.short_html                                    # a bare & in text
    assert '<span class="math"><i>a</i> &lt; <i>b</i></span>' in card.short_html  # < inside math
    html = cards.render_math(r"x_{<t} \le \sqrt{D} \cdot \tfrac{8}{3} W^\top \tilde h \mathrm{LN}(x)")
    assert "<sub>&lt;<i>t</i></sub>" in html and " ≤ " in html and " · " in html
    assert '<span class="sqrt">√<span class="rad"><i>D</i></span></span>' in html
    assert '<span class="frac"><span class="num">8</span><span class="den">3</span></span>' in html
    assert "<sup>⊤</sup>" in html and "h\u0303" in html and '<span class="rm">LN</span>' in html


def test_unknown_latex_is_shown_as_written_and_reported():
    warnings = []
    html = cards.render_math(r"\frobnicate{x} + 1", warnings)
    assert '<span class="tex">\\frobnicate</span>' in html and warnings == ["\\frobnicate"]


def test_bad_question_cells_are_refused_with_the_cell_named(tmp_path):
    with pytest.raises(cards.CardsError, match=r"nb.py: cell 3: question:qa-1 must start with the question"):
        cards.make_card("qa-1", "What is attention?\n\nIt mixes values.", NOTEBOOKS[0], where="nb.py: cell 3")
    source = tmp_path / "01_what_attention_computes.py"
    source.write_text('# %% [markdown] tags=["question:qa-99"]\n# ### A question?\n#\n# An answer.\n')
    with pytest.raises(cards.CardsError, match=r"question:qa-99 is not a question of the course plan"):
        cards.collect(tmp_path)


def test_cli_bad_input_gives_a_message_and_a_nonzero_status(tmp_path):
    lines = []
    assert cards.main(["--out", str(tmp_path)], out=lines.append, err=lines.append) == 2
    assert "is a folder" in lines[-1]
    assert cards.main(["--bogus"], out=lines.append, err=lines.append) == 2
    assert "unrecognized arguments: --bogus" in lines[-1] and "Traceback" not in "\n".join(lines)
    stale = tmp_path / "cards.html"
    page, deck = cards.generate(stale)
    stale.write_text(page.replace("<h3>", "<h3>Edited by hand: ", 1), encoding="utf-8")
    assert cards.main(["--out", str(stale), "--check"], out=lines.append, err=lines.append) == 1
    assert "out of date" in lines[-1] and "run `attnlab cards`" in lines[-1]
    assert f"changed: {deck.cards[0].id})" in lines[-1]  # the one card edited, named
    assert cards.main(["--out", str(tmp_path / "missing.html"), "--check"], out=lines.append,
                      err=lines.append) == 1
    assert "does not exist" in lines[-1]
    empty = tmp_path / "sources"
    empty.mkdir()
    (empty / "01_what_attention_computes.py").write_text('# %% [markdown] tags=["question:qa-1"]\n# no heading\n')
    original = cards.SOURCES
    try:
        cards.SOURCES = empty
        assert cards.main(["--out", str(tmp_path / "x.html")], out=lines.append, err=lines.append) == 2
    finally:
        cards.SOURCES = original
    assert "must start with the question as a `### ` heading" in lines[-1]


def test_out_writes_a_page_whose_links_stay_relative(tmp_path):
    lines = []
    target = tmp_path / "deck" / "cards.html"
    assert cards.main(["--out", str(target)], out=lines.append, err=lines.append) == 0
    page = target.read_text(encoding="utf-8")
    rel = os.path.relpath(ROOT / "notebooks", target.parent)
    assert f'href="{Path(rel).as_posix()}/01_what_attention_computes.ipynb' in page
    assert lines[-1].startswith("wrote ")


# ------------------------------------------------------------------------------ in a real browser
def _visible(driver):
    return [c for c in driver.find_elements("css selector", ".card") if c.is_displayed()]


def _answer_shown(card):
    return card.find_element("css selector", ".answer").is_displayed()


@pytest.mark.slow
def test_the_page_in_headless_chromium(deck, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    url = PAGE.resolve().as_uri()
    expected = len(_tagged_questions())
    with chromium(1280, 1000) as driver:
        started = time.monotonic()
        driver.get(url)
        WebDriverWait(driver, 20).until(lambda d: d.execute_script("return document.body.dataset.ready"))
        navigation = driver.execute_script("return performance.getEntriesByType('navigation')[0].duration")
        print(f"loaded {url} in {time.monotonic() - started:.2f} s (navigation {navigation:.0f} ms)")
        assert console_errors(driver) == []

        # every tagged question is a card, all shown
        assert len(driver.find_elements("css selector", ".card")) == expected
        assert len(_visible(driver)) == expected
        assert driver.find_element("id", "visible-count").text == str(expected)

        # filters hide cards: Hard only, then Hard cards of notebook 03 only
        driver.find_element("css selector", ".f-diff[data-value=Hard]").click()
        hard = [c for c in deck.cards if c.difficulty == "Hard"]
        shown = _visible(driver)
        assert len(shown) == len(hard) < expected
        assert {c.get_attribute("data-difficulty") for c in shown} == {"Hard"}
        driver.find_element("css selector", '.f-nb[data-value="3"]').click()
        want = [c.id for c in hard if c.notebook.number == 3]
        assert [c.get_attribute("data-id") for c in _visible(driver)] == want
        driver.find_element("id", "clear-filters").click()
        assert len(_visible(driver)) == expected

        # drill mode: answers hidden; a click on the question shows one, the keys show the next ones
        body = driver.find_element("tag name", "body")
        ActionChains(driver).send_keys("d").perform()
        assert "drill" in body.get_attribute("class")
        first, second, third = _visible(driver)[:3]
        assert not any(_answer_shown(c) for c in (first, second, third))
        first.find_element("css selector", "h3").click()
        assert _answer_shown(first) and not _answer_shown(second)
        ActionChains(driver).send_keys("j").perform()           # the clicked card is the current one
        assert "current" in second.get_attribute("class")
        ActionChains(driver).send_keys(Keys.SPACE).perform()
        assert _answer_shown(second) and not _answer_shown(third)
        second.find_element("css selector", ".reveal").click()  # the button hides it again
        assert not _answer_shown(second)
        ActionChains(driver).send_keys("j").send_keys(Keys.ENTER).perform()
        assert _answer_shown(third) and "current" in third.get_attribute("class")

        # marks: key 1 on the current card (then on to the next), a click for another; kept across a reload
        ActionChains(driver).send_keys("1").perform()
        assert third.get_attribute("data-mark") == "knew"
        fourth_id = _visible(driver)[3].get_attribute("data-id")
        assert "current" in _visible(driver)[3].get_attribute("class")
        first.find_element("css selector", ".mark-review").click()
        assert driver.find_element("id", "count-knew").text == "1"
        assert driver.find_element("id", "count-review").text == "1"
        third_id, first_id = third.get_attribute("data-id"), first.get_attribute("data-id")
        driver.refresh()
        WebDriverWait(driver, 20).until(lambda d: d.execute_script("return document.body.dataset.ready"))
        assert driver.find_element("id", f"card-{third_id}").get_attribute("data-mark") == "knew"
        assert driver.find_element("id", f"card-{first_id}").get_attribute("data-mark") == "review"
        assert driver.find_element("id", f"card-{fourth_id}").get_attribute("data-mark") == "none"
        assert driver.find_element("id", "count-knew").text == "1"
        assert driver.find_element("id", "count-left").text == str(expected - 2)
        assert console_errors(driver) == []

        # print layout: no controls, every shown card with its answer (even in drill mode), never split
        ActionChains(driver).send_keys("d").perform()
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
        assert not driver.find_element("css selector", ".toolbar").is_displayed()
        assert all(_answer_shown(c) for c in _visible(driver)[:5])
        assert driver.execute_script("return getComputedStyle(document.querySelector('.card')).breakInside") == "avoid"
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})
        assert not _answer_shown(_visible(driver)[0])  # back on screen: still drilling

        # the screenshot: drill mode with a filter on, one answer shown, two cards marked
        driver.find_element("css selector", ".f-diff[data-value=Medium]").click()
        driver.find_element("css selector", '.f-nb[data-value="2"]').click()
        cards_shown = _visible(driver)
        cards_shown[0].find_element("css selector", ".mark-knew").click()
        cards_shown[2].find_element("css selector", ".mark-review").click()
        cards_shown[1].find_element("css selector", "h3").click()
        driver.execute_script("window.scrollTo(0, 0)")
        target = SCREENSHOT if (os.environ.get("ATTNLAB_SCREENSHOTS") == "1" or not SCREENSHOT.exists()) \
            else tmp_path / "cards.png"
        assert driver.save_screenshot(str(target))
        print(f"screenshot: {target}")
        assert console_errors(driver) == []
