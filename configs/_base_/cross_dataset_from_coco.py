# The model trained on COCO-Stuff (inductive recipe: 50 prompt tokens, 15-template text
# embeddings) as it is evaluated on another dataset. A leaf config adds the target dataset's
# base file, lists all of its classes as base classes (so the seen-class calibration shifts
# every score equally and the report is plain mIoU) and names its text-embedding file.
_base_ = ['./models/cascade_clip_vit-b16.py', './default_runtime.py', './schedules/schedule_80k.py']
model = dict(novel_class=[], multi_prompts=True, backbone=dict(num_tokens=50))
# trained on COCO-Stuff's classes, tested on the target's: the checkpoint's meta['CLASSES'] is
# not required to be the dataset's
cross_dataset = True
