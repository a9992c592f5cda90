"""nni-lightnas: LightNAS hardware-aware neural architecture search as an NNI 3.0 plugin.

Subpackages
-----------
search_spaces
    The LightNAS model space, fixed LightNets and the stage-2 channel space.
strategies
    The LightNAS one-shot strategy and the BTE evolution tuner.

Submodules are imported on use, so ``import nni_lightnas`` stays cheap.
"""

__version__ = '0.1.0'

import warnings as _warnings

# NNI 3.0 scans torch.nn at import and warns about classes newer than itself (harmless).
_warnings.filterwarnings('ignore', message=r'.*is found to be not a nn\.Module.*', category=RuntimeWarning)
