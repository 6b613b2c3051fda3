"""A web page to segment your own images with your own class names (Gradio).

    python tools/web_demo.py [--config CFG --checkpoint CKPT] [--device cpu|cuda]
        [--host 127.0.0.1] [--port 7860] [--max-pixels N] [--oversize resize|refuse]
        [--max-classes N]

Upload or paste an image, type class names (comma- or line-separated, CSV quoting for names
with commas), press "Segment": the page shows the overlay with the legend of the classes
present and a table of their pixel shares, and offers the label map (PNG of class indices in
the order typed; 8-bit, 16-bit above 256 classes) and the overlay for download. The label map
is the one ``segment_image`` returns for the same image and names.

Without --checkpoint it serves the offline demo's trained tiny model (``bash tools/demo.sh``).
Needs the optional extra: ``pip install -e .[web]`` (requirements/web.txt). It listens on
127.0.0.1 only unless --host says otherwise; it makes no network calls of its own (Gradio's
analytics and share links are off).
"""
import argparse
import os
import os.path as osp
import re
import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

# Gradio must never call out (version check, telemetry), whatever the caller's environment says.
os.environ['GRADIO_ANALYTICS_ENABLED'] = 'False'
os.environ['HF_HUB_OFFLINE'] = '1'

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

import cv2  # noqa: E402
import mmcv  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmcv.utils import get_logger, print_log  # noqa: E402

import cascade_clip  # noqa: E402,F401
from cascade_clip.apis import init_model, read_image, segment_image  # noqa: E402
from cascade_clip.clip.templates import MULTI_TEMPLATES, SINGLE_TEMPLATE  # noqa: E402
from cascade_clip.clip.tokenizer import get_tokenizer  # noqa: E402
from cascade_clip.models.vocabulary import Vocabulary  # noqa: E402
from cascade_clip.utils import draw_segmentation  # noqa: E402
from cascade_clip.utils.image_files import write_image, write_label_map  # noqa: E402
from cascade_clip.utils.vocabulary_names import parse_class_list  # noqa: E402

DEMO_CONFIG = 'configs/demo/cascade_clip_tiny_synthetic.py'
DEMO_CHECKPOINT = 'work_dirs/demo/seed_0/latest.pth'  # written by tools/demo.sh (seed 0)
DEMO_EMBEDDINGS = 'data/demo/text_embeddings.npy'
DEMO_IMAGES = 'data/demo/images/val'
MAX_UPLOAD = '50mb'
GENERIC_EXAMPLES = ['cat, sofa, window', 'sky\ntree\nroad\ncar\nperson',
                    'grass, "table, wooden", wall']

Progress = Callable[[float, str], None]


class InputError(ValueError):
    """Something wrong with what the user gave; the message is shown on the page."""


@dataclass
class UnreadableUpload:
    """An uploaded file that is not an image (kept to say so on the page)."""
    name: str
    reason: str


@dataclass
class Result:
    labels: np.ndarray  # (H, W) int64 class indices, as segment_image returns them
    table: List[list]  # [class, index, pixels, share %] by decreasing area
    overlay_path: str
    label_map_path: str
    notes: List[str] = field(default_factory=list)


def check_tokenisable(names: Sequence[str], templates: Sequence[str], context_length: int) -> None:
    """InputError naming every class whose prompts do not fit CLIP's text context."""
    tok = get_tokenizer()
    long = []
    for name in names:
        n = max(len(tok.encode(t.format(name))) + 2 for t in templates)  # + start/end tokens
        if n > context_length:
            long.append(f'{_short(name)!r} ({n} tokens)')
    if long:
        raise InputError(f'too long for CLIP\'s text encoder, whose context holds {context_length} '
                         f'tokens with the prompt template: {", ".join(long)}; shorten these names')


def _short(name: str, n: int = 60) -> str:
    return name if len(name) <= n else name[:n] + '…'


class EmbeddingCache:
    """Text embeddings by class name (as the Vocabulary writes it), each computed once."""

    def __init__(self, model):
        self.model = model
        self._rows: Dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, name: str) -> bool:
        return name in self._rows

    def add(self, names: Sequence[str], rows: torch.Tensor) -> None:
        for name, row in zip(names, rows):
            self._rows[name] = row

    def embeddings(self, names: Sequence[str], progress: Optional[Progress] = None) -> torch.Tensor:
        """(K, D) rows of ``names``; the names not seen before are encoded in one call."""
        missing = list(dict.fromkeys(n for n in names if n not in self._rows))
        if missing:
            report = None if progress is None else \
                (lambda f: progress(f, f'text embeddings of {len(missing)} new class names'))
            self.add(missing, self.model.encode_names(missing, progress=report))
        return torch.stack([self._rows[n] for n in names])


class WebDemo:
    """The page's logic without the page: (image, names text, opacity) -> Result or InputError.

    Args:
        model: a CascadeCLIP model from ``init_model`` (its vocabulary is switched per request).
        out_dir: where the files offered for download are written (one folder per request).
        max_pixels: larger images are resized to fit (``oversize='resize'``) or refused.
        max_classes: longest class list accepted.
        notice: markdown shown at the top of the page (which model is served).
        examples: ready class lists (texts); example_images: image files offered as examples.
    """

    def __init__(self, model, out_dir: str, max_pixels: int = 1 << 20, oversize: str = 'resize',
                 max_classes: int = 1000, notice: str = '', examples: Sequence[str] = GENERIC_EXAMPLES,
                 example_images: Sequence[str] = ()):
        if oversize not in ('resize', 'refuse'):
            raise ValueError(f'oversize must be "resize" or "refuse", got {oversize!r}')
        self.model = model
        self.cache = EmbeddingCache(model)
        self.out_dir = out_dir
        self.max_pixels = int(max_pixels)
        self.oversize = oversize
        self.max_classes = int(max_classes)
        self.notice = notice
        self.examples = list(examples)
        self.example_images = list(example_images)
        self._lock = threading.Lock()  # one request at a time changes the model's vocabulary
        self._templates = MULTI_TEMPLATES if model.multi_prompts else (SINGLE_TEMPLATE, )

    # ------------------------------------------------------------------ inputs
    def read_names(self, text: Optional[str]) -> List[str]:
        try:
            names = parse_class_list(text)
        except ValueError as e:
            raise InputError(str(e)) from None
        if len(names) > self.max_classes:
            raise InputError(f'{len(names)} class names, more than the {self.max_classes} this page '
                             f'accepts (--max-classes)')
        try:
            names = list(Vocabulary(names).names)  # duplicates up to case and white space
        except ValueError as e:
            raise InputError(str(e)) from None
        check_tokenisable([n for n in names if n not in self.cache], self._templates,
                          self.model.context_length)
        return names

    def read_image(self, image) -> tuple:
        """(BGR array to segment, notes) from an uploaded file path."""
        if image is None:
            raise InputError('no image: upload or paste one first')
        if isinstance(image, UnreadableUpload):
            raise InputError(f'{image.name} could not be read as an image ({image.reason}); use a '
                             f'JPEG, PNG, BMP or WebP file')
        try:
            arr = read_image(image)
        except (ValueError, FileNotFoundError):
            raise InputError(f'{osp.basename(str(image))} could not be read as an image (OpenCV '
                             f'cannot decode it); use a JPEG, PNG, BMP or WebP file') from None
        h, w = arr.shape[:2]
        if h * w <= self.max_pixels:
            return arr, []
        size = f'{w}×{h} = {h * w:,} pixels'
        if self.oversize == 'refuse':
            raise InputError(f'the image ({size}) is larger than the limit of {self.max_pixels:,} '
                             f'pixels (--max-pixels): refused; use a smaller image')
        s = (self.max_pixels / (h * w))**0.5
        nw, nh = max(1, int(w * s)), max(1, int(h * s))
        arr = cv2.resize(arr, (nw, nh), interpolation=cv2.INTER_AREA)
        return arr, [f'the image ({size}) is larger than the limit of {self.max_pixels:,} pixels '
                     f'(--max-pixels): it was resized to {nw}×{nh} before segmentation, and the '
                     f'overlay and label map have that size']

    # ------------------------------------------------------------------ one request
    def segment(self, image, names_text: Optional[str], opacity: float = 0.5,
                progress: Optional[Progress] = None) -> Result:
        if not 0 < float(opacity) <= 1:
            raise InputError(f'the opacity must be in (0, 1], got {opacity}')
        arr, notes = self.read_image(image)
        names = self.read_names(names_text)
        with self._lock:
            emb = self.cache.embeddings(names, progress)
            # the same path as the API: the model's vocabulary, then segment_image
            self.model.set_vocabulary(names, embeddings=emb)
            if progress is not None:
                progress(1.0, 'segmenting')
            labels, _ = segment_image(self.model, arr)
            palette = self.model.PALETTE
        counts = np.bincount(labels.ravel(), minlength=len(names))
        order = np.argsort(-counts, kind='stable')  # the legend's order
        table = [[names[i], int(i), int(counts[i]), round(100.0 * counts[i] / labels.size, 2)]
                 for i in order if counts[i] > 0]
        overlay = draw_segmentation(arr, labels, names, palette, float(opacity))
        folder = tempfile.mkdtemp(prefix='request_', dir=self.out_dir)
        stem = _safe_stem(image)
        overlay_path = osp.join(folder, f'{stem}_overlay.png')
        label_map_path = osp.join(folder, f'{stem}_labels.png')
        write_image(overlay_path, overlay)
        write_label_map(label_map_path, labels, len(names))
        return Result(labels, table, overlay_path, label_map_path, notes)


def _safe_stem(path) -> str:
    stem = osp.splitext(osp.basename(str(path)))[0]
    return re.sub(r'[^A-Za-z0-9._-]+', '_', stem)[:60] or 'image'


def _md(text: str) -> str:
    """User text made inert in Markdown (HTML and Markdown punctuation escaped)."""
    text = text.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')
    return re.sub(r'([\\`*_{}\[\]()#+\-.!|~])', r'\\\1', text)


def run_request(demo: WebDemo, image, names_text, opacity, progress: Optional[Progress] = None):
    """(overlay path, table rows, download paths, status markdown); a message for bad input."""
    try:
        r = demo.segment(image, names_text, opacity, progress)
    except InputError as e:
        return None, [], None, f'**Error:** {_md(str(e))}'
    except Exception as e:  # noqa: BLE001 - the page says what failed, the log has the trace
        print_log(f'request failed: {e!r}', get_logger('cascade_clip'), level=40)
        import traceback
        print_log(traceback.format_exc(), get_logger('cascade_clip'), level=40)
        return None, [], None, f'**Error:** segmentation failed: {_md(f"{type(e).__name__}: {e}")}'
    k = len(demo.model.CLASSES)
    status = [f'**Done:** {len(r.table)} of {k} classes present; the label map holds the index '
              f'of each pixel\'s class in the order typed (0 = the first name).']
    status += [f'**Note:** {_md(n)}' for n in r.notes]
    return r.overlay_path, r.table, [r.label_map_path, r.overlay_path], '\n\n'.join(status)


def build_ui(demo: WebDemo):
    """The Gradio page (Blocks) around ``demo``."""
    import gradio as gr

    class UploadedImage(gr.Image):
        """gr.Image that hands an unreadable file on (to be reported) instead of failing."""

        def get_block_name(self) -> str:
            return 'image'

        def preprocess(self, payload):
            try:
                return super().preprocess(payload)
            except Exception as e:  # noqa: BLE001 - PIL's errors for files that are no images
                name = getattr(payload, 'orig_name', None) or getattr(payload, 'path', None) or 'file'
                name = osp.basename(name)
                return UnreadableUpload(name, f'{type(e).__name__}: {e}')

    def handle(image, names_text, opacity, progress=gr.Progress()):
        return run_request(demo, image, names_text, opacity,
                           lambda f, desc: progress(f, desc=desc))

    with gr.Blocks(title='Cascade-CLIP: segment with your own class names', analytics_enabled=False,
                   delete_cache=(3600, 3600)) as page:
        gr.Markdown('# Cascade-CLIP: segment an image with your own class names')
        if demo.notice:
            gr.Markdown(demo.notice, elem_id='notice')
        with gr.Row():
            with gr.Column():
                image = UploadedImage(label='Image (upload or paste)', type='filepath', image_mode=None,
                                      sources=['upload', 'clipboard'], elem_id='image',
                                      buttons=['fullscreen'])
                names = gr.Textbox(label='Class names (comma- or line-separated; "quote, names" '
                                   'with commas)', lines=4, elem_id='names',
                                   value=demo.examples[0] if demo.examples else '')
                opacity = gr.Slider(0.05, 1.0, value=0.5, step=0.05, label='Opacity', elem_id='opacity')
                button = gr.Button('Segment', variant='primary', elem_id='segment')
                gr.Examples(examples=[[e] for e in demo.examples], inputs=[names], label='Class lists')
                if demo.example_images:
                    gr.Examples(examples=[[p] for p in demo.example_images], inputs=[image],
                                label='Images')
            with gr.Column():
                status = gr.Markdown(elem_id='status')
                overlay = gr.Image(label='Overlay (legend: the classes present)', type='filepath',
                                   interactive=False, elem_id='overlay', buttons=['download', 'fullscreen'])
                table = gr.Dataframe(headers=['class', 'index', 'pixels', 'share (%)'],
                                     datatype=['str', 'number', 'number', 'number'],
                                     interactive=False, label='Classes found', elem_id='table')
                files = gr.File(label='Downloads: label map (PNG of class indices) and overlay',
                                file_count='multiple', interactive=False, elem_id='downloads')
        button.click(handle, [image, names, opacity], [overlay, table, files, status],
                     concurrency_limit=1)
    return page


def load_model(config: Optional[str], checkpoint: Optional[str], device: str):
    """(model, notice markdown, {name: row} seeds from the config's embedding file, examples,
    example images); SystemExit with what to do when the default demo model is missing."""
    examples, images = list(GENERIC_EXAMPLES), []
    if checkpoint is None and config is not None:
        raise SystemExit('--config needs --checkpoint (without both, the offline demo\'s model is served)')
    if checkpoint is None:
        config = osp.join(ROOT, DEMO_CONFIG)
        ckpt = osp.join(ROOT, DEMO_CHECKPOINT)
        emb_file = osp.join(ROOT, DEMO_EMBEDDINGS)
        if not (osp.isfile(ckpt) and osp.isfile(emb_file)):
            raise SystemExit(f'no --checkpoint given and the offline demo\'s model is not there '
                             f'({ckpt}); make it with: bash tools/demo.sh (about 5 minutes on 2 CPU '
                             f'cores), or pass --config CFG --checkpoint CKPT')
        cfg = mmcv.Config.fromfile(config)
        names = list(cfg.data.test.classes)
        # the demo's embeddings (its text encoder is untrained), read from the checkout, not the cwd
        rows = torch.from_numpy(np.load(emb_file, allow_pickle=False).astype(np.float32))
        model = init_model(config, ckpt, device=device, class_names=names, seen=cfg.model.base_class)
        model.set_vocabulary(names, cfg.model.base_class, embeddings=rows)
        demo_seeds = dict(zip(model.vocabulary.names, model.vocabulary.embeddings))
        notice = (f'Serving the **offline demo\'s tiny model** (`{DEMO_CHECKPOINT}`, trained by '
                  f'`bash tools/demo.sh` on synthetic 64×64 images), not a real CLIP. Its text '
                  f'encoder was never trained on text: only its {len(names)} classes, whose '
                  f'embeddings come from `{DEMO_EMBEDDINGS}`, are meaningful: '
                  f'{", ".join(names)}. Start with `--config CFG --checkpoint CKPT` for your model.')
        examples = [', '.join(names), ', '.join(names[i] for i in model.vocabulary.unseen),
                    'red flat\ngreen dots\nblue stripes\nyellow flat']
        d = osp.join(ROOT, DEMO_IMAGES)
        if osp.isdir(d):
            images = sorted(osp.join(d, f) for f in os.listdir(d) if f.endswith('.jpg'))[:4]
    else:
        if config is None:
            raise SystemExit('--checkpoint needs --config (the model\'s config file)')
        model = init_model(config, checkpoint, device=device)
        names = list(model.CLASSES)
        notice = (f'Model: {_md(osp.basename(config))} with {_md(osp.basename(checkpoint))}; text '
                  f'embeddings by its text encoder')
    vocab = model.vocabulary
    seeds = demo_seeds if checkpoint is None else {}
    if checkpoint is not None:
        if vocab.embeddings is not None and vocab.source and osp.isfile(str(vocab.source)):
            # the rows the model was trained and tested with, for the config's own classes
            seeds = dict(zip(vocab.names, vocab.embeddings))
            notice += f' (the config\'s {len(names)} classes: from {_md(osp.basename(vocab.source))})'
            examples.insert(0, ', '.join(names[:12]))
        notice += '.'
    return model, notice, seeds, examples, images


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', help=f'model config (default: {DEMO_CONFIG})')
    parser.add_argument('--checkpoint', help=f'checkpoint (default: the offline demo\'s, {DEMO_CHECKPOINT})')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--host', default='127.0.0.1',
                        help='address to listen on; 0.0.0.0 lets anyone on the network use the page')
    parser.add_argument('--port', type=int, default=7860)
    parser.add_argument('--max-pixels', type=int, default=1 << 20,
                        help='larger images are resized to this many pixels (or refused, --oversize)')
    parser.add_argument('--oversize', choices=['resize', 'refuse'], default='resize')
    parser.add_argument('--max-classes', type=int, default=1000, help='longest class list accepted')
    args = parser.parse_args(argv)
    if args.max_pixels < 1 or args.max_classes < 1:
        parser.error('--max-pixels and --max-classes must be positive')
    return args


def main(argv=None):
    args = parse_args(argv)
    logger = get_logger('cascade_clip')
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise SystemExit('the web demo needs Gradio: pip install -e ".[web]" '
                         '(or pip install -r requirements/web.txt)') from None
    try:
        model, notice, seeds, examples, images = load_model(args.config, args.checkpoint, args.device)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f'error: {e}') from None
    out_dir = tempfile.mkdtemp(prefix='cascade_clip_web_')
    try:
        demo = WebDemo(model, out_dir, args.max_pixels, args.oversize, args.max_classes, notice,
                       examples, images)
        if seeds:
            demo.cache.add(list(seeds), torch.stack(list(seeds.values())))
        page = build_ui(demo)
        print_log(f'serving on http://{args.host}:{args.port} (Ctrl-C stops)', logger)
        page.queue(default_concurrency_limit=1).launch(
            server_name=args.host, server_port=args.port, share=False, inbrowser=False,
            max_file_size=MAX_UPLOAD, allowed_paths=images or None, show_error=False,
            ssr_mode=False, mcp_server=False, run_history=False, quiet=True)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


if __name__ == '__main__':
    main()
