"""The package's layers import downward only, and ``import cascade_clip`` loads no scaffolding."""
import ast
import os
import os.path as osp
import subprocess
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PKG = osp.join(ROOT, 'cascade_clip')

# lowest first: a subpackage may import only those before it
LAYERS = ['utils', 'clip', 'models', 'datasets', 'core', 'apis', 'testing']


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
    # hence no cycle; and the runtime never reaches the scaffolding
    assert not any('testing' in deps for sub, deps in graph.items() if sub != 'testing')
    assert graph['utils'] == set()


def test_import_loads_no_scaffolding():
    code = ('import sys, cascade_clip; '
            'print(sorted(m for m in sys.modules if m.startswith("cascade_clip.")))')
    out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONWARNINGS='ignore'))
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = eval(out.stdout.strip().splitlines()[-1])
    assert 'cascade_clip.models.segmentors.cascade_clip' in loaded  # registration happened
    assert not any(m.startswith(('cascade_clip.testing', 'cascade_clip.apis')) for m in loaded), loaded


# references to design documents that live outside this repository; spelled in pieces so
# that this file does not contain them itself
OUTSIDE = ('SPEC' + ' §', '..' + '/shared')


def test_nothing_refers_outside_the_repository():
    hits = []
    files = [osp.join(ROOT, 'README.md')]
    for top in ('cascade_clip', 'tools', 'configs', 'tests'):
        for dirpath, _, names in os.walk(osp.join(ROOT, top)):
            files += [osp.join(dirpath, f) for f in names if f.endswith(('.py', '.sh', '.md'))]
    for path in files:
        text = open(path, encoding='utf-8').read()
        if any(ref in text for ref in OUTSIDE):
            hits.append(osp.relpath(path, ROOT))
    assert not hits
