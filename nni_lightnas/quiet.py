"""Silence the third-party chatter around our own output: known harmless warnings and tips.

A main job drives NNI and Lightning in one-shot mode, where several of their messages do not
apply: NNI asks to wrap data loaders with ``nni.trace`` (only needed to send trials to a
training service), Lightning notes that the one-shot module has a ``validation_step`` but the
search has no validation loader, advertises a cloud logger, names the accelerators it did not
find, and warns about a checkpoint folder our resumable stages reuse on purpose. Each is
matched by its message (never a whole category), so anything else still shows. The CLI calls
:func:`quiet_known_messages` unless ``--verbose`` is given; library users keep every message.

Example
-------
>>> import warnings
>>> with warnings.catch_warnings(record=True) as caught:
...     warnings.simplefilter('always')
...     quiet_known_messages()
...     warnings.warn('please try to wrap PyTorch DataLoader with nni.trace or import DataLoader')
...     warnings.warn('something else')
>>> [str(w.message) for w in caught]
['something else']
"""

from __future__ import annotations

import logging
import warnings

__all__ = ['KNOWN_WARNINGS', 'quiet_known_messages']

#: Regular expressions of warning messages that do not apply to a LightNAS run, and why.
KNOWN_WARNINGS: dict[str, str] = {
    r'.*wrap PyTorch DataLoader with nni\.trace': 'one-shot searches run in-process; no trial is sent anywhere',
    r'.*You defined a `validation_step` but have no `val_dataloader`':
        "NNI's one-shot module defines validation_step; the search validates on its own batches",
    r'.*isinstance\(treespec, LeafSpec\)': "a deprecation inside Lightning's own pytree helper",
    r'.*Checkpoint directory .* exists and is not empty': 'resumable stages write their checkpoints there again',
    r'.*does not have many workers which may be a bottleneck': 'data sets are in memory; workers would only copy them',
    r'.*The number of training batches .* is smaller than the logging interval':
        'short searches log per epoch; the history has every alpha step',
}

#: Loggers whose INFO lines (accelerator summary, tips) are not ours to show.
_CHATTY_LOGGERS = ('pytorch_lightning.utilities.rank_zero', 'lightning.pytorch.utilities.rank_zero',
                   'lightning_fabric.utilities.rank_zero', 'lightning.fabric.utilities.rank_zero')


def quiet_known_messages() -> None:
    """Ignore the warnings in :data:`KNOWN_WARNINGS` and Lightning's informational lines (tips, accelerators)."""
    for pattern in KNOWN_WARNINGS:
        warnings.filterwarnings('ignore', message=pattern)
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
