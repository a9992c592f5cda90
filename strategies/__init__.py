"""Search strategies of nni-lightnas: the LightNAS one-shot strategy and the BTE evolution tuner.

Examples
--------
>>> from nni_lightnas.strategies import LightNAS
"""

from .evolution import LightNASEvolution
from .latency_multiplier import LatencyMultiplier
from .lightnas import InfeasibleTargetError, LightNAS, LightNASLightningModule
from .single_path import SinglePathMixedLayer

__all__ = ['LightNAS', 'LightNASLightningModule', 'InfeasibleTargetError', 'LatencyMultiplier',
           'SinglePathMixedLayer', 'LightNASEvolution']
