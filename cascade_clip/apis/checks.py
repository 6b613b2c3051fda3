"""Where a model meets a dataset: the same classes, the same seen / unseen split."""
from typing import Optional

from ..utils.vocabulary_names import same_names


def check_model_matches_dataset(model, dataset, config: Optional[str] = None) -> None:
    """Raise ValueError unless ``model``'s vocabulary has ``dataset``'s classes, in order, and
    its unseen classes are the dataset's ``unseen_classes``."""
    vocab = model.vocabulary
    where = f' (config {config})' if config else ''
    ds_name = type(dataset).__name__
    if not same_names(vocab.names, dataset.CLASSES):
        raise ValueError(f'the model{where} has {len(vocab)} classes {list(vocab.names)[:6]}..., '
                         f'the dataset {ds_name} {len(dataset.CLASSES)} classes '
                         f'{list(dataset.CLASSES)[:6]}...: they must be the same, in order')
    ds_unseen = sorted(int(i) for i in getattr(dataset, 'unseen_classes', ()))
    if list(vocab.unseen) != ds_unseen:
        names = dataset.CLASSES
        raise ValueError(
            f'split mismatch{where}: the model\'s unseen classes (novel_class) are '
            f'{list(vocab.unseen)} {[names[i] for i in vocab.unseen]}, the dataset {ds_name}\'s '
            f'unseen_classes are {ds_unseen} {[names[i] for i in ds_unseen]}; define the split '
            f'once (the dataset config) and take it from there in the model config')
