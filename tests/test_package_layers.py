"""The package's layers import downward only, and ``import cascade_clip`` loads no scaffolding."""
import ast
import os
import os.path as osp
import re
import subprocess
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PKG = osp.join(ROOT, 'cascade_clip')

# lowest first: a subpackage may import only those before it
LAYERS = ['utils', 'clip', 'models', 'datasets', 'core', 'apis']


def subpackage_imports():
    """{subpackage: {subpackages it imports}} from the source (relative and absolute imports)."""
    graph = {}
    for sub in LAYERS:
        deps = set()
        for dirpath, _, files in os.walk(osp.join(PKG, sub)):
            for f in files:
                if not f.endswith('.py'):
                    continue
                path = osp.join(dirpath, f)
                parts = osp.relpath(path, PKG)[:-3].split(os.sep)
                tree = ast.parse(open(path).read())
                for node in ast.walk(tree):
                    if isinstance(node, ast.ImportFrom):
                        if node.level:  # relative: resolve against the file's package
                            base = parts[:-1][:len(parts) - node.level]
                            mod = base + (node.module.split('.') if node.module else [])
                        elif node.module and node.module.startswith('cascade_clip.'):
                            mod = node.module.split('.')[1:]
                        else:
                            continue
                        names = mod or [a.name for a in node.names]
                        deps.add(names[0])
                    elif isinstance(node, ast.Import):
                        for a in node.names:
                            if a.name.startswith('cascade_clip.'):
                                deps.add(a.name.split('.')[1])
        graph[sub] = deps - {sub}
    return graph


def test_layers_import_downward_only():
    graph = subpackage_imports()
    for sub, deps in graph.items():
        above = [d for d in deps if d in LAYERS and LAYERS.index(d) > LAYERS.index(sub)]
        assert not above, f'cascade_clip.{sub} imports {above}, which sit above it'
    assert graph['utils'] == set()  # hence no cycle between the layers


def test_no_module_imports_one_that_imports_it_back():
    """No import cycle between the package's modules (module level or inside a function)."""
    modules = {}
    for dirpath, _, files in os.walk(PKG):
        for f in files:
            if f.endswith('.py'):
                path = osp.join(dirpath, f)
                parts = osp.relpath(path, ROOT)[:-3].split(os.sep)
                if parts[-1] == '__init__':
                    parts = parts[:-1]
                modules['.'.join(parts)] = path
    graph = {}
    for name, path in modules.items():
        package = name if path.endswith('__init__.py') else name.rsplit('.', 1)[0]
        deps = set()
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.ImportFrom):
                base = package.split('.')[:len(package.split('.')) - node.level + 1] if node.level else []
                target = '.'.join(base + (node.module.split('.') if node.module else []))
                for alias in node.names:
                    full = f'{target}.{alias.name}'
                    deps.add(full if full in modules else target)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        # a package's __init__ re-exports its modules: only its own imports count
        graph[name] = {d for d in deps if d in modules and d != name and not name.startswith(d + '.')}

    def reaches(start, goal, seen):
        for d in graph[start] - seen:
            seen.add(d)
            if d == goal or reaches(d, goal, seen):
                return True
        return False

    cycles = [n for n in graph if not n.endswith('__init__') and any(
        reaches(d, n, {d}) for d in graph[n] if not modules[d].endswith('__init__.py'))]
    assert not cycles, cycles


def test_the_package_and_the_tools_never_import_the_tests():
    for top in ('cascade_clip', 'tools'):
        for dirpath, _, names in os.walk(osp.join(ROOT, top)):
            for f in names:
                if f.endswith('.py'):
                    text = open(osp.join(dirpath, f)).read()
                    assert not re.search(r'^\s*(from tests\b|import tests\b)', text, re.M), f


def test_import_loads_no_scaffolding():
    code = ('import sys, cascade_clip; '
            'print(sorted(m for m in sys.modules if m.startswith(("cascade_clip.", "tools", "tests"))))')
    out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONWARNINGS='ignore'))
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = eval(out.stdout.strip().splitlines()[-1])
    assert 'cascade_clip.models.segmentors.cascade_clip' in loaded  # registration happened
    assert not any(m.startswith('cascade_clip.apis') for m in loaded), loaded
    assert not any(m.startswith(('tools', 'tests')) for m in loaded), loaded


# references to design documents that live outside this repository; spelled in pieces so
# that this file does not contain them itself
OUTSIDE = ('SPEC' + ' §', '..' + '/shared')


def test_nothing_refers_outside_the_repository():
    hits = []
    files = [osp.join(ROOT, 'README.md')]
    for top in ('cascade_clip', 'tools', 'configs', 'tests', 'docs'):
        for dirpath, _, names in os.walk(osp.join(ROOT, top)):
            files += [osp.join(dirpath, f) for f in names if f.endswith(('.py', '.sh', '.md'))]
    for path in files:
        text = open(path, encoding='utf-8').read()
        if any(ref in text for ref in OUTSIDE):
            hits.append(osp.relpath(path, ROOT))
    assert not hits
