#!/usr/bin/python3
"""check_layout.py - the README's layout section names every source file.

The tree under proxy/ and include/ is drawn in README.md ("## Building and
layout", the first ``` block): one line per module. A file added without a
line there, or a line left for a file that is gone, fails this check, so
the drawing cannot drift from the tree. Exit 0 when they agree, else 1 with
one line per difference. --self-test shows both directions are caught.
"""
import os
import re
import sys
import tempfile


def layout_block(readme):
    sec = readme.split('## Building and layout', 1)
    if len(sec) < 2:
        return None
    m = re.search(r'```\n(.*?)```', sec[1], re.S)
    return m.group(1) if m else None


def names_in(block):
    """File names the block mentions: 'x.c/.h' names x.c and x.h."""
    names = set()
    for tok in re.findall(r'[\w]+\.(?:c/\.h|c|h)\b', block):
        if tok.endswith('.c/.h'):
            stem = tok[:-len('.c/.h')]
            names |= {stem + '.c', stem + '.h'}
        else:
            names.add(tok)
    # the public headers are listed by stem on their own lines
    m = re.search(r'include/smtp-tls-proxy/.*?\n((?:\s{20,}.*\n)+)', block)
    if m:
        for stem in m.group(1).split():
            names.add(stem + '.h')
    return names


def tree(root):
    files = set()
    for base in ('proxy', 'include'):
        for dp, _, fns in os.walk(os.path.join(root, base)):
            for fn in fns:
                if fn.endswith(('.c', '.h')):
                    files.add(fn)
    return files


def check(root):
    with open(os.path.join(root, 'README.md'), encoding='utf-8') as f:
        block = layout_block(f.read())
    if block is None:
        return ['README.md has no layout block under "## Building and layout"']
    named, present = names_in(block), tree(root)
    out = ['not in the README layout: %s' % n for n in sorted(present - named)]
    out += ['in the README layout but not in the tree: %s' % n for n in sorted(named - present)]
    return out


def self_test():
    ok = True
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(os.path.join(d, 'proxy/core'))
        os.makedirs(os.path.join(d, 'include/smtp-tls-proxy'))
        for p in ('proxy/core/a.c', 'proxy/core/a.h', 'proxy/main.c', 'include/smtp-tls-proxy/b.h'):
            open(os.path.join(d, p), 'w').close()
        readme = ('## Building and layout\n\n```\nproxy/main.c   top\n  a.c/.h   a\n'
                  'include/smtp-tls-proxy/   headers:\n                      b\n```\n')
        open(os.path.join(d, 'README.md'), 'w').write(readme)
        if check(d):
            print('self-test: a matching layout was refused: %s' % check(d))
            ok = False
        open(os.path.join(d, 'proxy/core/new.c'), 'w').close()
        if not any('not in the README layout: new.c' in p for p in check(d)):
            print('self-test: a new file missing from the layout was not reported')
            ok = False
        os.remove(os.path.join(d, 'proxy/core/new.c'))
        os.remove(os.path.join(d, 'proxy/core/a.h'))
        if not any('not in the tree: a.h' in p for p in check(d)):
            print('self-test: a removed file still in the layout was not reported')
            ok = False
    print('self-test: %s' % ('ok' if ok else 'FAILED'))
    return 0 if ok else 1


def main():
    if len(sys.argv) > 1 and sys.argv[1] == '--self-test':
        return self_test()
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), '..',
                                                              '..')
    problems = check(os.path.abspath(root))
    for p in problems:
        print(p)
    if not problems:
        print('layout: the README names every file under proxy/ and include/')
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
