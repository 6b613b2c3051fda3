"""Draw docs/cascade_clip.png, the architecture figure of the README.

    python docs/figures/draw_architecture.py
"""
import os.path as osp

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

OUT = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'cascade_clip.png')
FROZEN, TRAINED, DATA = '#dbe6f4', '#f9dcc4', '#eeeeee'


def box(ax, x, y, w, h, text, colour, size=9):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle='round,pad=0.02,rounding_size=0.08',
                                fc=colour, ec='#444444', lw=0.8))
    ax.text(x + w / 2, y + h / 2, text, ha='center', va='center', fontsize=size)


def arrow(ax, a, b, style='-|>'):
    ax.add_patch(FancyArrowPatch(a, b, arrowstyle=style, mutation_scale=9, lw=0.8, color='#444444',
                                 shrinkA=0, shrinkB=0))


def main():
    fig, ax = plt.subplots(figsize=(11, 4.6), dpi=110)
    ax.set_xlim(0, 11)
    ax.set_ylim(0, 4.6)
    ax.axis('off')
    # image encoder: 12 blocks, deep prompts, three groups of levels
    box(ax, 0.1, 1.6, 0.9, 0.8, 'image', DATA)
    box(ax, 1.3, 0.3, 2.1, 4.0, '', FROZEN)
    ax.text(2.35, 4.12, 'CLIP ViT-B/16 (frozen)', ha='center', fontsize=9)
    ax.text(2.35, 3.9, 'with deep visual prompts (trained)', ha='center', fontsize=7.5, color='#a0522d')
    groups = {(5, 6, 7): 'levels 0-2', (8, 9, 10): 'levels 3-5', (11, ): 'last layer'}
    ys = {}
    for i in range(12):
        y = 0.45 + i * 0.28
        colour = '#ffffff' if i < 5 else '#fff3c4'
        box(ax, 1.5, y, 1.1, 0.22, f'block {i + 1}', colour, 7)
        ax.add_patch(FancyBboxPatch((2.7, y + 0.02), 0.5, 0.18, boxstyle='round,pad=0.01',
                                    fc=TRAINED, ec='#a0522d', lw=0.5))
        ax.text(2.95, y + 0.11, 'prompts', ha='center', va='center', fontsize=5.5)
        ys[i] = y + 0.11
    arrow(ax, (1.0, 2.0), (1.5, ys[0]))
    # text side
    box(ax, 4.0, 3.75, 1.5, 0.6, 'class names', DATA)
    box(ax, 5.8, 3.75, 1.9, 0.6, 'CLIP text encoder\n(frozen)', FROZEN, 8)
    box(ax, 8.0, 3.75, 2.8, 0.6, 'queries [g ⊙ T, T]\n(T: text, g: global image embedding)', DATA, 8)
    arrow(ax, (5.5, 4.05), (5.8, 4.05))
    arrow(ax, (7.7, 4.05), (8.0, 4.05))
    # stages: aggregation and decoders
    for k, ((levels, name), y) in enumerate(zip(groups.items(), (0.6, 1.65, 2.7))):
        source = ys[levels[len(levels) // 2]]
        agg = ('Neighbourhood Gaussian\nAggregation' if len(levels) > 1 else 'dense map')
        box(ax, 4.0, y, 1.9, 0.7, f'{name}\n{agg}', TRAINED if len(levels) > 1 else DATA, 8)
        arrow(ax, (3.4, source), (4.0, y + 0.35))
        box(ax, 6.3, y, 1.6, 0.7, f'decoder {k + 1}\n(3 layers)', TRAINED, 8)
        arrow(ax, (5.9, y + 0.35), (6.3, y + 0.35))
        arrow(ax, (8.6, 3.75), (7.6, y + 0.7))
        arrow(ax, (7.9, y + 0.35), (8.55, 1.95))
    ax.text(8.75, 1.95, '+', ha='center', va='center', fontsize=16)
    arrow(ax, (8.9, 1.95), (9.05, 1.95))
    box(ax, 9.05, 1.45, 1.8, 1.0, 'mask logits\n→ sigmoid, seen − 0.1\n→ arg-max: labels', DATA, 8)
    ax.text(8.0, 0.15, 'orange: trained   blue: frozen CLIP', ha='center', fontsize=7.5, color='#555555')
    fig.savefig(OUT, bbox_inches='tight')
    print(f'wrote {OUT}')


if __name__ == '__main__':
    main()
