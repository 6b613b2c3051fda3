"""Config files in and out: the text written loads back with the same values (quotes, backslashes,
NumPy numbers), options keep their characters, a missing custom import is named, the user's
config is never the dump's target."""
import argparse
import os.path as osp
import re

import numpy as np
import pytest
from mmcv import Config

from cascade_clip.utils.config import (ConfigOptions, config_text, config_values, dump_path,
                                       read_config, write_config)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

AWKWARD = dict(
    work_dir="/x/bob's runs/w",                        # MMCV: YapfError, unterminated string
    data=dict(train=dict(data_root='/data/"quoted" dir', split='C:\\new\\table.txt'),  # \n, \t kept
              classes=["it's", 'plain'], pipeline=[dict(type='Load', note="o'k\nnext line")]),
    seed=np.int64(5),                                   # written as 5, not np.int64(5)
    ratios=(0.5, 1.0), one=(1, ), mapping={'a b': "x'y", 3: None}, flag=True, name='ünïcode',
    clip=dict(max_norm=float('inf'), low=[-float('inf'), np.float32(0.25)]))  # MMCV: max_norm=inf


def test_awkward_values_load_back_the_same(tmp_path):
    cfg = Config(AWKWARD)
    with pytest.raises(Exception, match='unterminated string literal'):
        cfg.pretty_text  # MMCV's own text: what the tools wrote before
    path = str(tmp_path / "bob's cfg.py")
    write_config(cfg, path, '/somewhere/my.py')
    loaded = Config.fromfile(path)
    back = loaded._cfg_dict.to_dict()
    assert back == dict(AWKWARD, seed=5)
    assert config_values(loaded) == config_values(cfg)  # what result keys are made of
    assert back['data']['train']['split'] == 'C:\\new\\table.txt'  # no newline, no tab
    assert type(back['seed']) is int and back['one'] == (1, )
    assert open(path).readline() == ('# Resolved config of /somewhere/my.py (_base_ files merged, '
                                     'options applied)\n')
    nan = Config(dict(weight=float('nan')))
    write_config(nan, path, 'nan.py')
    assert np.isnan(Config.fromfile(path).weight)  # MMCV wrote weight=nan: a NameError on loading


def test_plain_configs_keep_mmcvs_text():
    """Where MMCV's text is right, it is the same text (records keyed by it stay valid)."""
    cfg = Config.fromfile(osp.join(ROOT, 'configs/demo/cascade_clip_tiny_synthetic.py'))
    assert config_text(cfg) == cfg.pretty_text


# (YAPF takes seconds per config: the small ones of each kind)
@pytest.mark.parametrize('config', ['voc_20/vpt_seg_zero_vit-b_512x512_20k_12_10.py',
                                    'cross_dataset/coco-to-voc21.py'])
def test_configs_of_the_repository_round_trip(config, tmp_path):
    cfg = Config.fromfile(osp.join(ROOT, 'configs', config))
    path = str(tmp_path / 'dump.py')
    write_config(cfg, path, config)
    loaded = Config.fromfile(path)
    assert loaded._cfg_dict.to_dict() == cfg._cfg_dict.to_dict()
    assert config_values(loaded) == config_values(cfg)


def test_config_values_tell_tuples_lists_ints_and_floats_apart():
    values = [config_values(Config(dict(a=v))) for v in ((64, 64), [64, 64], 1, 1.0, '1')]
    assert len(set(values)) == 5


@pytest.mark.parametrize('value, key, what', [
    (dict(model=dict(scale=1j)), 'model.scale', 'the value 1j (complex)'),
    (dict(model=dict(ids=[1, {2, 3}])), 'model.ids.1', 'the value {2, 3} (set)'),
    (dict(model=dict(type=Config)), 'model.type', "<class 'mmcv.utils.config.Config'> (type)"),
    (dict(model=dict(arr=np.zeros(2))), 'model.arr', '(ndarray)'),
])
def test_values_no_config_file_can_hold_are_named(value, key, what):
    with pytest.raises(ValueError, match=rf'^config key {key}: .*{re.escape(what)}.* cannot be '
                       r'written to a config file'):
        config_text(Config(value))


def test_keyword_keys_are_named():
    with pytest.raises(ValueError, match=r"config key data.from: the Python keyword 'from' cannot be"):
        config_text(Config(dict(data={'from': 1})))


def parse(*options):
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=ConfigOptions)
    return parser.parse_args(['--cfg-options', *options]).cfg_options


def test_options_keep_spaces_and_quotes():
    assert parse("data_root=/x/bob's runs/w") == {'data_root': "/x/bob's runs/w"}  # MMCV: bob'sruns
    assert parse('a="say hi"', "b='a, b'", "c=it'", 'd=a b') == {
        'a': 'say hi', 'b': 'a, b', 'c': "it'", 'd': 'a b'}
    assert parse("names=['a b', \"it's\"]") == {'names': ['a b', "it's"]}
    # MMCV's rules otherwise
    assert parse('a=1', 'b=1e-4', 'c=true', 'd=None', 'e=x,y', 'f=[1, 2]', 'g=(64,64)', 'h=(1)',
                 'i=[(1,2),[a,b]]') == {
        'a': 1, 'b': 1e-4, 'c': True, 'd': None, 'e': ['x', 'y'], 'f': [1, 2], 'g': (64, 64),
        'h': (1, ), 'i': [(1, 2), ['a', 'b']]}


def test_a_list_whose_items_would_lose_spaces_is_a_usage_error(capsys):
    with pytest.raises(SystemExit):
        parse('data_root=/x/my runs,2')
    err = capsys.readouterr().err
    assert "--cfg-options data_root: '/x/my runs,2' is read as a list" in err
    with pytest.raises(SystemExit):
        parse('novalue')
    assert "--cfg-options: 'novalue' is not KEY=VALUE" in capsys.readouterr().err


def test_missing_custom_import_names_the_key_and_the_module(tmp_path):
    path = tmp_path / 'c.py'
    path.write_text("custom_imports = dict(imports=['cascade_clip', 'cascade_clip_plugins'])\n")
    with pytest.raises(ImportError, match=rf"config {path}: custom_imports.imports names the module "
                       r"'cascade_clip_plugins', which cannot be imported \(ModuleNotFoundError: "
                       r"No module named 'cascade_clip_plugins'\)"):
        read_config(str(path))
    path.write_text("custom_imports = dict(imports='cascade_clip_plugins', allow_failed_imports=True)\n")
    with pytest.warns(UserWarning, match='cascade_clip_plugins failed to import'):
        assert read_config(str(path)).custom_imports.imports == 'cascade_clip_plugins'


def test_dump_never_replaces_the_users_config(tmp_path):
    work = tmp_path / 'exp'
    work.mkdir()
    mine = work / 'my.py'
    mine.write_text('lr = 0.1\n')
    # the config lives in its work dir: another name
    assert dump_path(str(mine), str(work)) == str(work / 'my.resolved.py')
    # a file of the user's with the config's name (from elsewhere): another name too
    other = tmp_path / 'my.py'
    other.write_text('lr = 0.2\n')
    assert dump_path(str(other), str(work)) == str(work / 'my.resolved.py')
    # an earlier dump there is replaced
    write_config(Config(dict(lr=0.2)), str(work / 'my.py'), str(other))
    assert dump_path(str(other), str(work)) == str(work / 'my.py')
    # ... but not when it is the config given
    assert dump_path(str(work / 'my.py'), str(work)) == str(work / 'my.resolved.py')
    # both names taken by the user's files: refused, naming both
    mine.write_text('lr = 0.1\n')
    (work / 'my.resolved.py').write_text('lr = 0.3\n')
    with pytest.raises(FileExistsError, match=rf'{work}/my.py and {work}/my.resolved.py are not '
                       r'config dumps'):
        dump_path(str(other), str(work))
