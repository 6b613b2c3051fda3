# A model trained on COCO-Stuff (inductive) evaluated on Pascal VOC with background (21
# classes, "VOC-20b" / "PAS-21"; background predicted from its text embedding; plain mIoU).
#   python tools/test.py configs/cross_dataset/coco-to-voc21.py COCO_CKPT --eval mIoU
_base_ = [
    '../_base_/models/cascade_clip_vit-b16.py', '../_base_/datasets/zero_voc12_21.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_80k.py'
]
model = dict(
    base_class={{_base_.both_class}},
    novel_class=[],
    both_class={{_base_.both_class}},
    multi_prompts=True,
    backbone=dict(num_tokens=50),
    load_text_embedding='text_embeddings/voc21_multi.npy')
data = dict(val=dict(unseen_classes=[]), test=dict(unseen_classes=[]))
# trained on COCO-Stuff's classes, tested on this dataset's: the checkpoint's meta['CLASSES']
# is not required to be the dataset's
cross_dataset = True
