from .cascade_clip import CascadeCLIP

__all__ = ['CascadeCLIP']
