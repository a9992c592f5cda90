"""``--space package.module:Class``: the ``profile`` and ``search`` commands on any NNI model space.

A space is named as ``package.module:Class`` (imported; the working directory is on the path,
as with ``python -m``) or ``path/to/file.py:Class``, and built with the keyword arguments of
``--space-args`` (a JSON object). Anything callable that returns a model space works in place of
a class (a factory function). ``--input-shape`` gives the input batch that ``profile`` measures
at (batch included); ``search`` reads its training data from ``--data module:callable``
(``--data-args`` JSON), a callable returning a torch ``Dataset`` of ``(input, label)`` pairs.

Examples
--------
>>> load_object('collections:OrderedDict', '{}', what='--space')
OrderedDict()
>>> parse_shape('1x40x49')
(1, 40, 49)
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import os
import random
import sys
from pathlib import Path
from typing import Any

__all__ = ['add_space_arguments', 'add_data_arguments', 'load_object', 'parse_shape', 'load_space',
           'profile_any_space', 'search_any_space']

_logger = logging.getLogger(__name__)


def add_space_arguments(parser: argparse.ArgumentParser, *, input_shape: bool = True) -> None:
    """``--space``, ``--space-args`` (and ``--input-shape``) on a subcommand's parser."""
    parser.add_argument('--space', default=None, metavar='MODULE:CLASS',
                        help='any NNI model space with LayerChoice layers, as package.module:Class or '
                             'path/to/file.py:Class (instead of --preset)')
    parser.add_argument('--space-args', default=None, metavar='JSON',
                        help='keyword arguments of --space as a JSON object, e.g. \'{"channels": 32}\'')
    if input_shape:
        parser.add_argument('--input-shape', default=None, metavar='SHAPE',
                            help='with --space: the input batch measured, batch included, e.g. 8,40,49 or 1x3x32x32')


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data`` and ``--data-args``: the training set of a search on ``--space``."""
    parser.add_argument('--data', default=None, metavar='MODULE:CALLABLE',
                        help='with --space: a callable returning a torch Dataset of (input, label) pairs')
    parser.add_argument('--data-args', default=None, metavar='JSON', help='keyword arguments of --data (JSON object)')


def parse_shape(text: str) -> tuple[int, ...]:
    """``'8,40,49'`` or ``'8x40x49'`` -> ``(8, 40, 49)``; every size a positive integer."""
    parts = [part.strip() for part in str(text).replace('x', ',').split(',') if part.strip()]
    try:
        shape = tuple(int(part) for part in parts)
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise ValueError(f'--input-shape must be positive integers separated by , or x (batch first), e.g. '
                         f'8,40,49; got {text!r}')
    return shape


def load_object(spec: str, arguments: str | None, *, what: str) -> Any:
    """Import ``module:attribute`` (or ``file.py:attribute``) and call it with the JSON keyword ``arguments``."""
    module_name, _, attribute = str(spec).rpartition(':')
    if not module_name or not attribute:
        raise ValueError(f'{what} must be package.module:Name or path/to/file.py:Name, got {spec!r}')
    if module_name.endswith('.py'):
        path = Path(module_name)
        if not path.is_file():
            raise FileNotFoundError(f'{what}: {path} does not exist')
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules.setdefault(path.stem, module)
        module_spec.loader.exec_module(module)
    else:
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            raise ValueError(f'{what}: cannot import {module_name!r} ({error}); give an importable module or a '
                             f'path/to/file.py') from None
    target: Any = module
    for part in attribute.split('.'):
        if not hasattr(target, part):
            raise ValueError(f'{what}: {module_name!r} has no {attribute!r}')
        target = getattr(target, part)
    try:
        kwargs = json.loads(arguments) if arguments else {}
    except json.JSONDecodeError as error:
        raise ValueError(f'{what} arguments must be a JSON object, got {arguments!r} ({error})') from None
    if not isinstance(kwargs, dict):
        raise ValueError(f'{what} arguments must be a JSON object such as {{"channels": 32}}, got {arguments!r}')
    if not callable(target):
        raise ValueError(f'{what}: {spec!r} is a {type(target).__name__}, not a class or function')
    return target(**kwargs)


def load_space(args: argparse.Namespace) -> Any:
    """The model space of ``--space`` / ``--space-args``, checked for what LightNAS can search."""
    from torch import nn

    from nni_lightnas.search_spaces.nni_space import space_candidates
    space = load_object(args.space, args.space_args, what='--space')
    if not isinstance(space, nn.Module):
        raise ValueError(f'--space {args.space} built a {type(space).__name__}, not an NNI model space')
    space_candidates(space)
    return space


def profile_any_space(args: argparse.Namespace, device: Any) -> dict[str, Any]:
    """``profile --space``: the LUT of the space at ``--input-shape`` (and a linear calibration with ``--correct linear``)."""
    import torch

    from nni_lightnas.latency.calibration import fit_linear_calibration
    from nni_lightnas.latency.space_lut import build_space_lut, measure_space_archs
    from nni_lightnas.search_spaces.nni_space import arch_string
    if args.input_shape is None:
        raise ValueError('profile --space needs --input-shape (batch first), e.g. --input-shape 8,40,49')
    if args.correct not in ('none', 'linear'):
        raise ValueError(f'--correct {args.correct} is for our presets (BBSSP base nets are LightNets); with --space '
                         f'use --correct none or linear')
    shape = parse_shape(args.input_shape)
    if args.batch is not None:
        shape = (int(args.batch),) + shape[1:]
    space = load_space(args)
    lut = build_space_lut(space, device, example_input=torch.zeros(shape), path=args.output,
                          overwrite=args.overwrite)
    outputs = {'plain': str(args.output)}
    final = lut
    if args.correct == 'linear':
        rng = random.Random(args.seed)
        archs = [{label: rng.choice(ops) for label, ops in lut.candidates.items()}
                 for _ in range(args.calibration_archs)]
        measured = measure_space_archs(space, archs, device, example_input=shape)
        final = fit_linear_calibration(lut, archs, [result.median_ms for result in measured])
        path = Path(args.output)
        path = path.with_name(f'{path.stem}.linear{path.suffix}')
        final.save(path)
        outputs['linear'] = str(path)
    low, high = final.latency_range()
    check = lut.metadata.get('whole_net_check', [])
    return {'outputs': outputs, 'latency_model': outputs.get('linear', outputs['plain']),
            'space': lut.metadata.get('space'), 'space_fingerprint': lut.metadata.get('space_fingerprint'),
            'input_shape': list(shape), 'device': lut.metadata.get('device'), 'threads': lut.metadata.get('threads'),
            'layers': len(lut.labels), 'instances': lut.metadata.get('instances'), 'range_ms': [low, high],
            'whole_net_check_worst_error': max((abs(row['relative_error']) for row in check), default=None),
            'calibration': final.metadata.get('calibration'),
            'fastest_arch': arch_string({label: min(ops, key=lambda op: lut.latency(label, op))
                                         for label, ops in lut.candidates.items()})}


def search_any_space(args: argparse.Namespace, config: Any, latency_model: Any) -> dict[str, Any]:
    """``search --space``: :func:`~nni_lightnas.search.run_search` on the space with the ``--data`` data set."""
    from nni_lightnas.search import run_search
    if args.data is None:
        raise ValueError('search --space needs --data module:callable, a function returning a torch Dataset of '
                         '(input, label) pairs (e.g. --data examples/nni_spaces/kws_space.py:generated_kws_features '
                         '--data-args \'{"num_examples": 2048}\')')
    from nni_lightnas.latency.lut import LatencyLUT
    space = load_space(args)
    if isinstance(latency_model, LatencyLUT):  # before the data is built: a LUT of another space fails fast
        latency_model.check_compatible(space, source=str(args.latency))
    dataset = load_object(args.data, args.data_args, what='--data')
    return run_search(config, latency_model, args.output, space=space, dataset=dataset,
                      enable_progress_bar=args.progress)
