"""Search strategies of nni-lightnas: the LightNAS one-shot strategy and the BTE evolution tuner.

Examples
--------
>>> from nni_lightnas.strategies import LightNAS
"""

import importlib as _importlib
from typing import TYPE_CHECKING

__all__ = ['LightNAS', 'LightNASLightningModule', 'InfeasibleTargetError', 'LatencyMultiplier',
           'SinglePathMixedLayer', 'SinglePathRepeat', 'LightNASEvolution', 'ProfilingConfig', 'ProfilingResult',
           'profile_search_space', 'comfort_zone_scale']

# Exports are imported on first use (PEP 562): NNI imports the evolution tuner through this
# package and gives a tuner 10 seconds to connect, too short to import torch and Lightning
# on a loaded machine.
_EXPORTS = {
    'LightNASEvolution': '.evolution',
    'LatencyMultiplier': '.latency_multiplier',
    'InfeasibleTargetError': '.lightnas',
    'LightNAS': '.lightnas',
    'LightNASLightningModule': '.lightnas',
    'SinglePathMixedLayer': '.single_path',
    'SinglePathRepeat': '.single_path',
    'ProfilingConfig': '.space_profiling',
    'ProfilingResult': '.space_profiling',
    'profile_search_space': '.space_profiling',
    'comfort_zone_scale': '.comfort_zone',
}

if TYPE_CHECKING:  # pragma: no cover
    from .evolution import LightNASEvolution
    from .latency_multiplier import LatencyMultiplier
    from .lightnas import InfeasibleTargetError, LightNAS, LightNASLightningModule
    from .single_path import SinglePathMixedLayer, SinglePathRepeat
    from .space_profiling import ProfilingConfig, ProfilingResult, profile_search_space
    from .comfort_zone import comfort_zone_scale


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(_importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
