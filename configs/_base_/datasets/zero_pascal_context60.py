# Pascal Context, 60 classes: background (0) is a class, MMSeg's PascalContextDataset layout.
# Same images, annotation folder, split files and pipelines as Context-59; only the dataset
# type (labels not shifted, background kept) and the class ids differ.
_base_ = './zero_pascal_context59.py'
dataset_type = 'ZeroPascalContextDataset60'
both_class = list(range(60))
# Context-59's 10 unseen classes, each id + 1 past background (background is seen); a config
# cannot compute with a base's value, so tests/test_tools/test_configs.py checks the shift
novel_class = [1, 3, 4, 8, 10, 14, 18, 20, 32, 38]
base_class = [i for i in range(60) if i not in novel_class]
data = dict(
    train=dict(type=dataset_type, unseen_classes=novel_class),
    val=dict(type=dataset_type, unseen_classes=novel_class),
    test=dict(type=dataset_type, unseen_classes=novel_class))
