"""NNI's ProxylessNAS hub space: refused before any training, naming the module and the mutable.

ProxylessNAS chooses each stage's depth with ``Repeat`` and its blocks' kernel sizes and widths
with mutable ops (``MutableConv2d``); LightNAS searches ``LayerChoice`` layers only, so the space
is refused when its LUT is built (and when a search starts), before any measurement or training::

    python examples/nni_spaces/proxylessnas.py

prints the error. To search such a space with LightNAS, write the depth or kernel choice as a
``LayerChoice`` of fixed modules (see docs/your_own_space.md).
"""

from __future__ import annotations

import torch
from nni.nas.hub.pytorch import ProxylessNAS

from nni_lightnas.latency import LocalDevice
from nni_lightnas.latency.lut import build_lut
from nni_lightnas.search_spaces.nni_space import UnsupportedMutableError


def main() -> None:
    try:
        build_lut(ProxylessNAS(width_mult=0.25), LocalDevice(), example_input=torch.zeros(1, 3, 32, 32))
    except UnsupportedMutableError as error:
        print(f'refused: {error}')


if __name__ == '__main__':
    main()
