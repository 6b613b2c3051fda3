"""The README is an entry page to the docs/ pages, and every link of both resolves."""
import glob
import os.path as osp
import re

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PAGES = [osp.join(ROOT, 'README.md')] + sorted(glob.glob(osp.join(ROOT, 'docs', '*.md')))
LINK = re.compile(r'!?\[[^\]]*\]\(([^)\s]+)\)')


def anchors(path):
    """GitHub's anchors of a Markdown file's headings."""
    heads = re.findall(r'^#+ (.+)$', open(path, encoding='utf-8').read(), re.M)
    return {re.sub(r'[^\w\- ]', '', h.strip().lower()).replace(' ', '-') for h in heads}


def test_readme_is_an_entry_page():
    lines = open(PAGES[0], encoding='utf-8').read().splitlines()
    assert len(lines) <= 200
    docs = [p for p in PAGES[1:]]
    assert len(docs) >= 6
    for page in docs:  # every page is reachable from the README
        assert f'docs/{osp.basename(page)}' in '\n'.join(lines), page


@pytest.mark.parametrize('page', PAGES, ids=[osp.relpath(p, ROOT) for p in PAGES])
def test_every_link_resolves(page):
    text = open(page, encoding='utf-8').read()
    assert not re.search(r'\b[A-Z_]{4,}_(TEXT|TABLE|SUMMARY|ESTIMATE)\b', text)  # no placeholder
    for target in LINK.findall(text):
        if re.match(r'[a-z]+://', target) or target.startswith('mailto:'):
            continue  # outside addresses are not fetched here
        path, _, anchor = target.partition('#')
        path = osp.normpath(osp.join(osp.dirname(page), path)) if path else page
        assert osp.exists(path), f'{osp.relpath(page, ROOT)}: {target} does not exist'
        if anchor and path.endswith('.md'):
            assert anchor in anchors(path), f'{osp.relpath(page, ROOT)}: no heading for #{anchor}'
