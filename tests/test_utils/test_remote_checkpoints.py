"""Checkpoints named by URL or another remote scheme are refused before anything is fetched,
through every path that loads one (MMCV's load_checkpoint, init_cfg Pretrained, the project's
loaders, tools/train.py), with a message saying how to download the file."""
import http.server
import os
import os.path as osp
import threading
import urllib.request

import mmcv.runner.checkpoint as mmcv_checkpoint
import pytest
import torch
from mmcv.runner import load_checkpoint

from cascade_clip.apis import load_weights
from cascade_clip.clip import load_clip_state_dict
from cascade_clip.utils import CheckpointError, safe_load
from tests.tiny import build, tiny_model_cfg
from tests.tool_runner import run_tool

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
REFUSED = 'refused to fetch the checkpoint {}: checkpoints are read from local files only'
OTHER_SCHEMES = ['torchvision://resnet50', 'modelzoo://resnet50', 'open-mmlab://resnet50_v1c',
                 'openmmlab://resnet50_v1c', 'mmcls://resnet50', 'pavi://models/evil.pth',
                 's3://bucket/evil.pth', 'cluster1:s3://bucket/evil.pth']


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    """A local HTTP server offering a checkpoint whose pickle runs os.system; it records every
    request it gets."""
    d = tmp_path_factory.mktemp('served')
    marker = d / 'PWNED'
    torch.save({'state_dict': {}, 'meta': Payload(marker)}, d / 'evil.pth')
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(d), **kw)

        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f'http://127.0.0.1:{httpd.server_address[1]}/evil.pth'
    # the served file is a real attack: fetched and unpickled without restriction, it runs
    with urllib.request.urlopen(url) as r:
        served = r.read()
    assert requests == ['/evil.pth'] and b'posix' in served
    requests.clear()
    yield url, requests, marker
    httpd.shutdown()
    assert not marker.exists()


@pytest.fixture
def no_network(monkeypatch):
    """Every way MMCV and torch fetch a file fails the test if it is called."""
    def fetch(*args, **kwargs):
        raise AssertionError(f'a download was attempted: {args}')
    for mod, name in [(torch.hub, 'load_state_dict_from_url'), (torch.hub, 'download_url_to_file'),
                      (mmcv_checkpoint, 'load_url'), (urllib.request, 'urlopen')]:
        monkeypatch.setattr(mod, name, fetch)


def test_every_mmcv_scheme_is_refused_through_load_checkpoint(server, no_network):
    url, requests, marker = server
    model = torch.nn.Conv2d(1, 1, 1)
    for source in [url, url.replace('http://', 'https://'), *OTHER_SCHEMES]:
        with pytest.raises(CheckpointError) as e:
            load_checkpoint(model, source)
        assert REFUSED.format(source) in str(e.value)
        assert 'Download it first with' in str(e.value) and 'pass the local path' in str(e.value)
    assert not requests and not marker.exists()


def test_message_gives_the_url_to_download(no_network):
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(torch.nn.Conv2d(1, 1, 1), 'open-mmlab://resnet50_v1c')
    assert ('`wget -O FILE.pth https://download.openmmlab.com/pretrain/third_party/'
            'resnet50_v1c-2cccc1ad.pth`') in str(e.value)
    with pytest.raises(CheckpointError, match='the tool of that storage service'):
        load_checkpoint(torch.nn.Conv2d(1, 1, 1), 's3://bucket/x.pth')


def test_project_loaders_refuse_urls(server, no_network):
    url, requests, marker = server
    model = build(tiny_model_cfg())
    with pytest.raises(CheckpointError, match=REFUSED.format(url)):
        safe_load(url)
    with pytest.raises(CheckpointError, match=REFUSED.format(url)):
        load_weights(model, url)
    with pytest.raises(CheckpointError, match=r'refused to fetch the CLIP checkpoint '
                       + url + r'.*pass the local path.*ViT-B-16.pt'):
        load_clip_state_dict(url)
    with pytest.raises(CheckpointError, match='refused to fetch the CLIP checkpoint'):
        build(tiny_model_cfg(pretrained=url))
    assert not requests and not marker.exists()


def test_init_cfg_pretrained_url_is_refused(server, no_network):
    url, requests, marker = server
    with pytest.raises(CheckpointError, match=REFUSED.format(url)):
        build(tiny_model_cfg(init_cfg=dict(type='Pretrained', checkpoint=url)))
    from mmcv.runner import BaseModule

    class Net(BaseModule):
        def __init__(self):
            super().__init__(init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50'))
            self.conv = torch.nn.Conv2d(1, 1, 1)

    with pytest.raises(CheckpointError, match=REFUSED.format('torchvision://resnet50')):
        Net().init_weights()
    assert not requests and not marker.exists()


@pytest.mark.parametrize('flag', ['--resume-from', '--load-from'])
def test_train_tool_refuses_a_url_before_any_work(server, tmp_path, flag):
    url, requests, marker = server
    work = tmp_path / 'work'
    config = osp.join(ROOT, 'configs/demo/cascade_clip_tiny_synthetic.py')
    r = run_tool('train', config, '--work-dir', str(work), flag, url)
    key = flag[2:].replace('-', '_')
    assert r.returncode != 0
    assert f'error: refused to fetch the {key} checkpoint {url}' in r.stderr
    assert 'Traceback' not in r.stderr
    assert not work.exists()  # nothing done: no work dir, no log, no dataset read
    assert not requests and not marker.exists()
