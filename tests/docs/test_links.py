"""Every relative link in README.md and docs/*.md points at a file that exists and, with
#anchor, at a heading of that file (GitHub's heading slugs)."""
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PAGES = [ROOT / 'README.md'] + sorted((ROOT / 'docs').glob('*.md'))
_LINK = re.compile(r'\[[^\]]*\]\(([^)\s]+)\)')
_FENCE = re.compile(r'^```.*?^```', re.S | re.M)


def slug(heading):
    """GitHub's anchor of a heading: lower case, punctuation but '-' and '_' dropped, spaces
    to '-'."""
    text = re.sub(r'[^\w\- ]', '', heading.strip().lower())
    return text.replace(' ', '-')


def anchors(page):
    text = _FENCE.sub('', page.read_text(encoding='utf-8'))
    found = set()
    for line in text.splitlines():
        match = re.match(r'#{1,6}\s+(.*)', line)
        if match:
            found.add(slug(match.group(1)))
    return found


def test_slug_follows_github():
    assert slug('### `refine_top_k`: refine only the best proposals'.lstrip('# ')) == (
        'refine_top_k-refine-only-the-best-proposals')
    assert slug('Accuracy of the faster variants') == 'accuracy-of-the-faster-variants'


@pytest.mark.parametrize('page', PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page):
    broken = []
    for target in _LINK.findall(_FENCE.sub('', page.read_text(encoding='utf-8'))):
        if re.match(r'[a-z]+:', target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition('#')
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f'{target}: no file {linked}')
        elif anchor and linked.suffix == '.md' and anchor not in anchors(linked):
            broken.append(f'{target}: no heading #{anchor} in {linked.name}')
    assert not broken, f'{page.name}: ' + '; '.join(broken)
