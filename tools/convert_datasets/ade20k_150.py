"""ADE20K-150 (the SceneParsing benchmark): ADEChallengeData2016.zip unpacked into the datasets
folder, or an unpacked folder checked; no conversion (the configs read the release as it is).

    python tools/convert_datasets/ade20k_150.py ADEChallengeData2016.zip [-o datasets]
    python tools/convert_datasets/ade20k_150.py datasets/ADEChallengeData2016

The zip (data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip) is checked before
anything is written: no member may leave the folder it is unpacked into (absolute names or
``..``), and it must hold the layout the configs read, ``ADEChallengeData2016/images/
{training,validation}/<id>.jpg`` with ``annotations/{training,validation}/<id>.png`` for the
same ids (20210 and 2000). Its ``ADEChallengeData2016/`` folder is then unpacked into
OUT_DIR/.ADEChallengeData2016.tmp-<pid> and renamed to OUT_DIR/ADEChallengeData2016 when
complete (removed on failure); an existing OUT_DIR/ADEChallengeData2016 is never overwritten.
Given a folder, the same layout is checked there.
"""
import argparse
import os
import os.path as osp
import shutil
import sys
import zipfile
from typing import Dict, Iterable, List, Optional

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmcv.utils import get_logger, print_log  # noqa: E402

from cascade_clip.utils.paths import escapes  # noqa: E402

TOP = 'ADEChallengeData2016'
SPLIT_SIZES = {'training': 20210, 'validation': 2000}
SUFFIX = {'images': '.jpg', 'annotations': '.png'}


def check_layout(names: Iterable[str], where: str) -> Dict[str, int]:
    """SystemExit unless the file names ``names`` (relative to ADEChallengeData2016, '/'
    separated) hold images/<split>/<id>.jpg and annotations/<split>/<id>.png for the same ids,
    as many as the release per split; {split: number of image and label map pairs}."""
    ids = {(kind, split): set() for kind in SUFFIX for split in SPLIT_SIZES}
    for name in names:
        parts = name.split('/')
        if len(parts) == 3 and (parts[0], parts[1]) in ids:
            stem, ext = osp.splitext(parts[2])
            if ext == SUFFIX[parts[0]]:
                ids[parts[0], parts[1]].add(stem)
    problems = []
    for split, size in SPLIT_SIZES.items():
        images, labels = ids['images', split], ids['annotations', split]
        for kind, have, lack in (('images', images, labels), ('annotations', labels, images)):
            if len(have) != size:
                problems.append(f'{kind}/{split} holds {len(have)} {SUFFIX[kind]} files '
                                f'(expected {size})')
            unmatched = sorted(have - lack)
            if unmatched:
                other = 'annotations' if kind == 'images' else 'images'
                problems.append(f'{len(unmatched)} of {kind}/{split} have no {other}/{split}/'
                                f'<id>{SUFFIX[other]}, e.g. {unmatched[:3]}')
    if problems:
        raise SystemExit(f'{where} is not the ADEChallengeData2016 release the configs read: '
                         + '; '.join(problems))
    return {split: len(ids['images', split]) for split in SPLIT_SIZES}


def folder_names(folder: str) -> List[str]:
    """Every file below ``folder``, relative and '/' separated."""
    return [osp.relpath(osp.join(d, f), folder).replace(os.sep, '/')
            for d, _, files in os.walk(folder) for f in files]


def unpack(zip_path: str, out_dir: str, logger) -> Dict[str, int]:
    """Checks ``zip_path`` then unpacks its ADEChallengeData2016/ into ``out_dir`` whole."""
    target = osp.join(out_dir, TOP)
    if osp.lexists(target):
        raise SystemExit(f'{target} exists and is not overwritten; check it with: python '
                         f'tools/convert_datasets/ade20k_150.py {target}')
    try:
        archive = zipfile.ZipFile(zip_path)
    except (OSError, zipfile.BadZipFile) as e:
        raise SystemExit(f'{zip_path} is not a readable zip archive ({e})') from None
    with archive:
        names = archive.namelist()
        outside = [n for n in names if escapes(n)]
        if outside:
            raise SystemExit(f'{zip_path} has {len(outside)} member(s) that would be written '
                             f'outside the folder it is unpacked into (absolute or with ".."), '
                             f'e.g. {outside[:3]}: refused, nothing unpacked')
        members = [n for n in names if n.startswith(TOP + '/')]
        counts = check_layout([n[len(TOP) + 1:] for n in members], zip_path)
        if len(members) < len(names):
            print_log(f'{len(names) - len(members)} member(s) of {zip_path} outside {TOP}/ are '
                      f'not unpacked', logger, level=30)
        os.makedirs(out_dir, exist_ok=True)
        tmp = osp.join(out_dir, f'.{TOP}.tmp-{os.getpid()}')
        try:
            archive.extractall(tmp, members)
            os.rename(osp.join(tmp, TOP), target)
        except (OSError, zipfile.BadZipFile, EOFError) as e:
            raise SystemExit(f'could not unpack {zip_path} into {target} (nothing is left '
                             f'there): {e}') from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return counts


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('source', help='ADEChallengeData2016.zip, or an unpacked '
                                       'ADEChallengeData2016 folder to check')
    parser.add_argument('-o', '--out_dir', default='datasets',
                        help='where the zip is unpacked (default: datasets)')
    args = parser.parse_args(argv)
    logger = get_logger('cascade_clip.convert')
    if osp.isdir(args.source):
        counts = check_layout(folder_names(args.source), args.source)
        done = f'{osp.abspath(args.source)} has the layout the configs read'
    elif osp.isfile(args.source):
        counts = unpack(args.source, args.out_dir, logger)
        done = f'unpacked {args.source} into {osp.abspath(osp.join(args.out_dir, TOP))}'
    else:
        raise SystemExit(f'{args.source} not found: give ADEChallengeData2016.zip or the '
                         f'unpacked ADEChallengeData2016 folder')
    print_log(f'{done}: images/ and annotations/ with {counts["training"]} training and '
              f'{counts["validation"]} validation pairs', logger)


if __name__ == '__main__':
    main()
