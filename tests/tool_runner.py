"""A tool's ``main(argv)`` run in the test process, reported as a finished command would be.

For tests that check what a tool refuses or writes: a subprocess pays several seconds of imports
each time. Tests that need a process of their own (signals, several processes, the log file of a
training) start one.
"""
import contextlib
import importlib
import io
import logging
import traceback
import os.path as osp
from types import SimpleNamespace

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def run_tool(script: str, *args: str) -> SimpleNamespace:
    """``tools/<name>.py args`` in this process: ``returncode`` (0, an exit status, or 1 for an
    exception) and ``stderr`` (what the tool and its loggers wrote there, then the message of
    the exception or exit, as an interpreter prints its last line)."""
    tool = importlib.import_module('tools.' + osp.splitext(osp.basename(script))[0])
    err = io.StringIO()
    handler = logging.StreamHandler(err)
    loggers = [logging.getLogger(n) for n in ('mmseg', 'cascade_clip', 'mmcv')]
    for logger in loggers:
        logger.addHandler(handler)
    code = 0
    try:
        with contextlib.redirect_stderr(err):
            tool.main(list(args))
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
        if e.code is not None and not isinstance(e.code, int):
            err.write(f'{e.code}\n')
    except Exception:  # noqa: B902 - as the interpreter reports an uncaught exception
        code = 1
        err.write(traceback.format_exc())
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    return SimpleNamespace(returncode=code, stderr=err.getvalue(), stdout='')
