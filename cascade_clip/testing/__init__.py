"""Scaffolding for the tests, the offline demo and same-run speed comparisons.

Never imported by ``import cascade_clip``: tiny CLIP files in OpenAI's format
(``tiny_clip``), the synthetic colour x texture dataset (``synthetic``), and the published
code's forward path re-implemented on this project's modules (``published_path``).
"""
from .tiny_clip import TinyOpenAICLIP, make_tiny_clip, save_tiny_clip

__all__ = ['TinyOpenAICLIP', 'make_tiny_clip', 'save_tiny_clip']
