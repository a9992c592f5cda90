"""``nni-lightnas register``: make ``tuner: {name: LightNASEvolution}`` work in NNI configs.

Registers the tuners listed in the shipped ``nni_lightnas/tuner_meta.yml`` in NNI's
algorithm registry (what ``nnictl algo register --meta_path`` does), which lives in
``$NNI_CONFIG_DIR`` or, inside a virtual environment, in ``<venv>/nni``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ['META_PATH', 'add_arguments', 'run']

META_PATH = Path(__file__).resolve().parents[1] / 'tuner_meta.yml'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--unregister', action='store_true', help='remove the registration instead')
    parser.add_argument('--meta', default=str(META_PATH), help='meta file (default: the shipped tuner_meta.yml)')


def run(args: argparse.Namespace) -> int:
    import nni
    from nni.runtime.config import get_config_directory
    from nni.tools import package_utils
    from nni.tools.nnictl.algo_management import read_reg_meta_list, verify_algo_import

    metas = read_reg_meta_list(args.meta)
    for meta in metas:
        if args.unregister:
            package_utils.unregister_algo_meta(meta.name)
            print(f'unregistered {meta.name}')
            continue
        old = package_utils.get_algo_meta(meta.name)
        if old is not None and old.is_builtin:
            raise ValueError(f'{meta.name} is a built-in NNI algorithm; it cannot be replaced')
        verify_algo_import(meta)
        package_utils.register_algo_meta(meta)
        print(f'registered {meta.algo_type} {meta.name} -> {meta.class_name} (NNI {nni.__version__}, '
              f'registry in {get_config_directory()})')
    return 0
