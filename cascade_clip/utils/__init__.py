from .tiny_clip import TinyOpenAICLIP, make_tiny_clip, save_tiny_clip

__all__ = ['TinyOpenAICLIP', 'make_tiny_clip', 'save_tiny_clip']
