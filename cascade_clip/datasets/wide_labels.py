"""Loading label maps whose class ids do not fit in 8 bits (uint16 TIFF/PNG, e.g. ADE20K-847)."""
import os.path as osp

import mmcv
import numpy as np
from mmseg.datasets.builder import PIPELINES
from mmseg.datasets.pipelines import LoadAnnotations


@PIPELINES.register_module()
class LoadWideAnnotations(LoadAnnotations):
    """``LoadAnnotations`` that keeps 16-bit class ids (MMSeg's casts to uint8), as int64; no
    ``reduce_zero_label`` or custom-class ``label_map``."""

    def __init__(self, reduce_zero_label: bool = False, **kwargs):
        if reduce_zero_label:
            raise ValueError('LoadWideAnnotations reads class ids as stored: '
                             'reduce_zero_label=True is not supported')
        super().__init__(reduce_zero_label=False, **kwargs)

    def __call__(self, results: dict) -> dict:
        if self.file_client is None:
            self.file_client = mmcv.FileClient(**self.file_client_args)
        filename = osp.join(results.get('seg_prefix') or '', results['ann_info']['seg_map'])
        gt = mmcv.imfrombytes(self.file_client.get(filename), flag='unchanged',
                              backend=self.imdecode_backend).squeeze()
        if gt.dtype not in (np.uint8, np.uint16):
            raise ValueError(f'label map {filename} has pixel type {gt.dtype}: expected 8- or '
                             f'16-bit class ids (uint8 / uint16)')
        if results.get('label_map'):
            raise ValueError('custom classes (a label_map) are not supported for wide label maps')
        results['gt_semantic_seg'] = gt.astype(np.int64)
        results['seg_fields'].append('gt_semantic_seg')
        return results
