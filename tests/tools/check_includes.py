#!/usr/bin/python3
"""check_includes.py - the layout rules that a compiler does not check.

1. No import circles between files. A .c file depends on another .c file
   when it includes a header and uses (names) a function declared there
   that the other file defines. Types-only headers create no dependency. A cycle in that
   graph is an error, printed as the chain of files.
2. The core library (proxy/core/, include/smtp-tls-proxy/) never includes
   libuv or TLS library headers (<uv.h>, <openssl/...>), directly or through
   a project header: it is unit-tested in a process that holds OpenSSL 3.

Usage: check_includes.py [ROOT]       check the tree (default: the repo)
       check_includes.py --self-test  show that each rule catches a breach
Exit status 0 when clean, 1 with one line per problem.
"""
import os
import re
import sys
import tempfile

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)
PROTO = re.compile(r'\b([A-Za-z_]\w*)\s*\(')
FORBIDDEN_IN_CORE = re.compile(r'^(uv\.h|uv/.*|openssl/.*)$')


def strip_comments(text):
    text = re.sub(r'/\*.*?\*/', ' ', text, flags=re.S)
    return re.sub(r'//[^\n]*', ' ', text)


def top_level_statements(text):
    """Statements at brace depth 0, with the text of bodies removed; each is
    (head, has_body). Preprocessor lines are dropped."""
    text = strip_comments(text)
    text = '\n'.join(l for l in text.split('\n') if not l.lstrip().startswith('#'))
    out, cur, depth, paren = [], [], 0, 0
    for ch in text:
        if depth == 0:
            if ch == '{' and paren == 0:
                out.append((''.join(cur).strip(), True))
                cur = []
                depth = 1
                continue
            if ch == ';' and paren == 0:
                out.append((''.join(cur).strip(), False))
                cur = []
                continue
            if ch == '(':
                paren += 1
            elif ch == ')':
                paren -= 1
            cur.append(ch)
        else:
            if ch == '{':
                depth += 1
            elif ch == '}':
                depth -= 1
                if depth == 0:
                    cur = []
    return out


def function_name(head):
    """The function a declaration or definition head names, else None."""
    if not head or head.startswith(('typedef', 'struct', 'enum', 'union')) and '(' not in head:
        return None
    if head.startswith('typedef'):
        return None
    m = None
    for m in PROTO.finditer(head):
        break
    if not m:
        return None
    name = m.group(1)
    before = head[:m.start()].strip()
    if not before or name in ('__attribute__', 'sizeof'):
        return None
    if re.search(r'\(\s*\*', head[:m.end() + 2]):
        return None  # a function pointer variable
    return name


def scan(root):
    files = {}
    for base in ('proxy', 'include'):
        for dp, _, fns in os.walk(os.path.join(root, base)):
            for fn in fns:
                if fn.endswith(('.c', '.h')):
                    p = os.path.join(dp, fn)
                    with open(p, encoding='utf-8', errors='replace') as f:
                        files[os.path.relpath(p, root)] = f.read()
    return files


def resolve(root, src, name, files):
    """The project file that `#include "name"` in src means, or None."""
    cands = [os.path.join(os.path.dirname(src), name), os.path.join('include', name),
             os.path.join('proxy', name)]
    for c in cands:
        c = os.path.normpath(c)
        if c in files:
            return c
    return None


def check(root):
    files = scan(root)
    problems = []
    includes = {}
    for f, text in files.items():
        inc = []
        for kind, name in INCLUDE.findall(strip_comments(text)):
            target = resolve(root, f, name, files) if kind == '"' else None
            inc.append((name, target))
        includes[f] = inc
    declared, defined = {}, {}
    for f, text in files.items():
        for head, body in top_level_statements(text):
            name = function_name(head)
            if not name or head.startswith('static') or ' static ' in head:
                continue
            if f.endswith('.h') and not body:
                declared.setdefault(f, set()).add(name)
            elif f.endswith('.c') and body:
                defined.setdefault(name, set()).add(f)
    # Rule 2: core never reaches libuv or a TLS library, even indirectly.
    for f in files:
        if not (f.startswith('proxy/core/') or f.startswith('include/')):
            continue
        seen, stack = set(), [(f, [f])]
        while stack:
            cur, chain = stack.pop()
            for name, target in includes.get(cur, []):
                if FORBIDDEN_IN_CORE.match(name):
                    problems.append('core file %s includes <%s> (via %s)' %
                                    (f, name, ' -> '.join(chain)))
                if target and target not in seen:
                    seen.add(target)
                    stack.append((target, chain + [target]))
    # Rule 1: the file dependency graph has no cycle.
    graph = {}
    for f in files:
        if not f.endswith('.c'):
            continue
        deps = set()
        body = strip_comments(files[f])
        for _, target in includes[f]:
            for fn in declared.get(target, ()):
                if re.search(r'\b' + re.escape(fn) + r'\b', body):
                    deps |= defined.get(fn, set())
        deps.discard(f)
        graph[f] = sorted(deps)
    problems += ['import circle: ' + ' -> '.join(c) for c in cycles(graph)]
    return problems


def cycles(graph):
    """One representative chain per strongly connected component."""
    index, low, onstack, stack, out, counter = {}, {}, set(), [], [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        onstack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in onstack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                onstack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(chain_in(graph, sorted(comp)))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def chain_in(graph, comp):
    """A cycle through the component's first file, for the message."""
    members, start = set(comp), comp[0]
    prev, todo = {start: None}, [start]
    while todo:
        v = todo.pop(0)
        for w in graph.get(v, ()):
            if w == start:
                path = [v]
                while prev[path[-1]]:
                    path.append(prev[path[-1]])
                return list(reversed(path)) + [start]
            if w in members and w not in prev:
                prev[w] = v
                todo.append(w)
    return comp


def write(root, rel, text):
    p = os.path.join(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, 'w') as f:
        f.write(text)


def self_test():
    """Each rule must catch a deliberate breach, and a clean tree pass."""
    ok = True
    with tempfile.TemporaryDirectory() as d:
        write(d, 'include/smtp-tls-proxy/a.h', 'int a_f(void);\n')
        write(d, 'proxy/core/a.c', '#include "smtp-tls-proxy/a.h"\nint a_f(void) { return 1; }\n')
        write(d, 'proxy/net/b.h', '#include <uv.h>\nint b_f(void);\n')
        write(d, 'proxy/net/b.c',
              '#include "b.h"\n#include "smtp-tls-proxy/a.h"\nint b_f(void) { return a_f(); }\n')
        clean = check(d)
        if clean:
            print('self-test: a clean tree was refused: %s' % clean)
            ok = False
        # A circle: a.c now calls b_f, declared in b.h, defined in b.c.
        write(d, 'proxy/core/a.c', '#include "smtp-tls-proxy/a.h"\n#include "../net/b.h"\n'
              'int a_f(void) { return b_f(); }\n')
        found = check(d)
        if not any('import circle' in p and 'a.c' in p and 'b.c' in p for p in found):
            print('self-test: the circle a.c <-> b.c was not reported: %s' % found)
            ok = False
        if not any('includes <uv.h>' in p for p in found):
            print('self-test: core reaching <uv.h> through b.h was not reported: %s' % found)
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
        print('includes: no import circle, core free of libuv and TLS headers')
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
