"""The pipeline's settings (one YAML file), checked whole before any stage runs.

:func:`load_pipeline_config` reads the YAML and :meth:`PipelineConfig.from_dict` checks every
key of every section (and of ``quick:``) against :data:`SCHEMA`: unknown keys, wrong types,
values out of range and empty target lists are refused with the file, the key, the value and
what is accepted, so a typo costs no profiling time.

Examples
--------
>>> config = PipelineConfig.from_dict({'preset': 'tiny', 'search': {'epochs': 4}})
>>> config.search['epochs'], config.search['warmup_epochs']
(4, 2)
>>> PipelineConfig.from_dict({'search': {'epochs': 'six'}})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
nni_lightnas.pipeline_config.PipelineConfigError: search.epochs: 'six' (a str) is not an integer >= 1
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ['DEFAULT_LANDING_TOLERANCE', 'DEFAULT_MAX_ROUNDS',
           'PipelineConfig', 'PipelineConfigError', 'Setting', 'SCHEMA', 'load_pipeline_config']

_INFINITY = math.inf

#: The closed loop's defaults: the final net must measure within 2% of its target, in at most 3 rounds.
DEFAULT_LANDING_TOLERANCE = 0.02
DEFAULT_MAX_ROUNDS = 3


class PipelineConfigError(ValueError):
    """A pipeline setting is unknown, of the wrong type or out of range; the message names file, key and value."""


@dataclass(frozen=True)
class Setting:
    """What one setting accepts.

    Attributes
    ----------
    kind
        ``'int'``, ``'float'``, ``'str'``, ``'bool'``, ``'dict'`` or ``'floats'`` (a non-empty list of numbers).
    low, high
        Inclusive bounds of a number (or of every number of a list), unless ``open_low``/``open_high``.
    optional
        ``null`` is accepted.
    choices
        The accepted strings (``None``: any string).
    """

    kind: str
    low: float = -_INFINITY
    high: float = _INFINITY
    optional: bool = False
    choices: tuple[str, ...] | None = None
    open_low: bool = False
    open_high: bool = False

    def describe(self) -> str:
        """The accepted values in words, e.g. ``an integer >= 1``."""
        if self.kind == 'dict':
            text = 'a mapping'
        elif self.kind == 'bool':
            text = 'true or false'
        elif self.kind == 'str':
            text = f'one of {", ".join(self.choices)}' if self.choices else 'a string'
        else:
            noun = {'int': 'an integer', 'float': 'a number', 'floats': 'a non-empty list of numbers'}[self.kind]
            text = noun + self._range()
        return text + (' or null' if self.optional else '')

    def _range(self) -> str:
        low, high = self.low, self.high
        if low == -_INFINITY and high == _INFINITY:
            return ''
        if high == _INFINITY:
            return f' {">" if self.open_low else ">="} {low:g}'
        if low == -_INFINITY:
            return f' {"<" if self.open_high else "<="} {high:g}'
        return f' in {"(" if self.open_low else "["}{low:g}, {high:g}{")" if self.open_high else "]"}'

    def _number_ok(self, value: Any, integer: bool) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if integer and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        above = value > self.low if self.open_low else value >= self.low
        below = value < self.high if self.open_high else value <= self.high
        return above and below

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` (as YAML parsed it) is accepted."""
        if value is None:
            return self.optional
        if self.kind == 'int':
            return self._number_ok(value, integer=True)
        if self.kind == 'float':
            return self._number_ok(value, integer=False)
        if self.kind == 'floats':
            return (isinstance(value, list) and len(value) > 0
                    and all(self._number_ok(item, integer=False) for item in value))
        if self.kind == 'str':
            return isinstance(value, str) and (self.choices is None or value in self.choices)
        if self.kind == 'bool':
            return isinstance(value, bool)
        if self.kind == 'dict':
            return isinstance(value, dict)
        raise ValueError(f'unknown setting kind {self.kind!r}; accepted: int, float, floats, str, bool, dict')


_COUNT = Setting('int', low=1)
_OPTIONAL_COUNT = Setting('int', low=1, optional=True)
_RATE = Setting('float', low=0, open_low=True)
_ACCELERATORS = ('cpu', 'gpu', 'cuda', 'mps', 'auto')

#: Every section's settings. ``search`` holds the keys of :class:`nni_lightnas.search.SearchConfig`
#: that the pipeline does not set itself (preset, target, seed, data_dir).
SCHEMA: dict[str, dict[str, Setting]] = {
    'profile': {'runs': _COUNT, 'warmup': Setting('int', low=0), 'threads': _COUNT,
                'calibrate': Setting('int', low=0, optional=True), 'batch': _OPTIONAL_COUNT},
    'search': {'epochs': _COUNT, 'warmup_epochs': Setting('int', low=0), 'batch_size': _COUNT,
               'train_limit': _OPTIONAL_COUNT, 'arch_fraction': Setting('float', low=0, high=1, open_low=True,
                                                                        open_high=True),
               'learning_rate': _RATE, 'weight_decay': Setting('float', low=0), 'arc_learning_rate': _RATE,
               'lambda_lr': Setting('float', low=0), 'lr_anneal_threshold': Setting('float', low=0),
               'landing_tolerance': Setting('float', low=0, optional=True), 'strategy_options': Setting('dict'),
               'accelerator': Setting('str', choices=_ACCELERATORS)},
    'evolve': {'max_trials': _COUNT, 'population_size': _COUNT, 'sample_size': _COUNT, 'batches': _OPTIONAL_COUNT,
               'last': _OPTIONAL_COUNT, 'data_limit': _OPTIONAL_COUNT,
               'data': Setting('str', choices=('fashion_mnist', 'cifar10', 'imagenet', 'synthetic')),
               'supernet': Setting('str', optional=True), 'latency': Setting('str'),
               'latency_args': Setting('dict'), 'fill_tolerance': Setting('float', low=0, high=1, open_high=True)},
    'train': {'epochs': _COUNT, 'train_limit': _OPTIONAL_COUNT, 'test_limit': _OPTIONAL_COUNT,
              'batch_size': _COUNT, 'learning_rate': _RATE, 'accelerator': Setting('str', choices=_ACCELERATORS)},
    'measure': {'runs': _COUNT, 'rounds': _COUNT, 'landing_tolerance': Setting('float', low=0, open_low=True),
                'max_rounds': _COUNT},
}
#: The top-level settings that are not sections.
TOP_LEVEL: dict[str, Setting] = {
    'run_dir': Setting('str'), 'preset': Setting('str'), 'device': Setting('str'), 'device_options': Setting('dict'),
    'data_dir': Setting('str', optional=True),
    'target_quantiles': Setting('floats', low=0, high=1, open_low=True, open_high=True),
    'targets_ms': Setting('floats', low=0, open_low=True, optional=True),
    'seed': Setting('int', low=0),
    'target_energy_mj': Setting('float', low=0, open_low=True, optional=True),
}


@dataclass
class PipelineConfig:
    """Settings of one pipeline run (one YAML file).

    Attributes
    ----------
    run_dir
        Where every artifact goes.
    preset
        Search space preset (Fashion-MNIST shaped presets for the built-in data).
    device
        ``local``, an ``ssh://`` board or a pool of them (comma-separated): every stage measures there.
    device_options
        Keyword arguments of the device (:func:`~nni_lightnas.latency.device_pool.make_device`):
        ``identity_file``, ``ssh_options``, ``remote_python``, ... for ``ssh://``.
    data_dir
        The data set's directory (default: the preset's built-in data).
    target_quantiles, targets_ms
        Targets as positions in the space's latency range, or in ms (``targets_ms`` wins);
        non-empty lists.
    profile, search, evolve, train, measure
        Per-stage settings; :data:`SCHEMA` lists what each accepts (see also
        ``examples/fashion_mnist/pipeline.yml``). ``measure.landing_tolerance`` (default
        :data:`DEFAULT_LANDING_TOLERANCE`) and ``measure.max_rounds`` (default
        :data:`DEFAULT_MAX_ROUNDS`) set the closed loop after export (:mod:`~nni_lightnas.closed_loop`).
    seed
        Seed of every stage.
    target_energy_mj
        An energy budget per inference (mJ) beside every latency target, or ``None``: the search
        (:attr:`~nni_lightnas.search.SearchConfig.target_energy_mj`) keeps it too, lands on the
        latency target and reports the energy; the profiled LUT must have an ``energy_mj``
        column (a board that measures energy).
    """

    run_dir: str = 'runs/fashion_mnist'
    preset: str = 'fashion_mnist'
    device: str = 'local'
    device_options: dict[str, Any] = field(default_factory=dict)
    data_dir: str | None = None
    target_quantiles: list[float] = field(default_factory=lambda: [0.4])
    targets_ms: list[float] | None = None
    profile: dict[str, Any] = field(default_factory=lambda: {'runs': 100, 'warmup': 10, 'threads': 1,
                                                             'calibrate': 16})
    search: dict[str, Any] = field(default_factory=lambda: {'epochs': 8, 'warmup_epochs': 2, 'train_limit': 10000,
                                                            'batch_size': 128})
    evolve: dict[str, Any] = field(default_factory=lambda: {'max_trials': 12, 'population_size': 6,
                                                            'sample_size': 3, 'batches': 40, 'data_limit': 5000})
    train: dict[str, Any] = field(default_factory=lambda: {'epochs': 3, 'train_limit': 20000, 'batch_size': 128,
                                                           'learning_rate': 0.05, 'test_limit': None})
    measure: dict[str, Any] = field(default_factory=lambda: {'runs': 200, 'rounds': 3})
    seed: int = 0
    target_energy_mj: float | None = None

    @classmethod
    def from_dict(cls, data: Any, *, quick: bool = False, source: str | None = None) -> 'PipelineConfig':
        """Check ``data`` (a parsed YAML file; ``source`` names it in errors) and build the settings.

        Raises
        ------
        PipelineConfigError
            The first unknown key, wrong type or value out of range, with what is accepted.
        """
        where = f'{source}: ' if source else ''
        if not isinstance(data, dict):
            raise PipelineConfigError(f'{where}the file holds a {type(data).__name__}; expected a mapping of '
                                      f'settings (run_dir: ..., preset: ..., search: {{...}})')
        data = dict(data)
        quick_overrides = data.pop('quick', None) or {}
        _check_settings(data, where, '')
        if not isinstance(quick_overrides, dict):
            raise PipelineConfigError(f'{where}quick: {quick_overrides!r} is not a mapping of settings')
        if 'quick' in quick_overrides:
            raise PipelineConfigError(f'{where}quick.quick: a quick section cannot hold another')
        _check_settings(quick_overrides, where, 'quick.')
        config = cls()
        for overrides in ([data, quick_overrides] if quick else [data]):
            for key, value in overrides.items():
                current = getattr(config, key)
                setattr(config, key, {**current, **value} if key in SCHEMA else value)
        config.check(where)
        return config

    def check(self, where: str = '') -> None:
        """Checks across settings: warm-up shorter than the search, sample within the population, preset, device."""
        search = self.search
        if not 0 <= search.get('warmup_epochs', 2) < search.get('epochs', 10):
            raise PipelineConfigError(f'{where}search.warmup_epochs: {search.get("warmup_epochs")} must be smaller '
                                      f'than search.epochs={search.get("epochs")}')
        evolve = self.evolve
        if evolve.get('sample_size', 1) > evolve.get('population_size', 20):
            raise PipelineConfigError(f'{where}evolve.sample_size: {evolve.get("sample_size")} must be at most '
                                      f'evolve.population_size={evolve.get("population_size")}')
        from .search_spaces.presets import PRESETS
        if self.preset not in PRESETS:
            raise PipelineConfigError(f'{where}preset: {self.preset!r} is not a preset; accepted: '
                                      f'{", ".join(PRESETS)}')
        if self.device != 'local' or self.device_options:
            from .latency.device_pool import make_device
            try:
                make_device(self.device, **self.device_options)
            except (ValueError, TypeError) as error:
                raise PipelineConfigError(f'{where}device: {error}') from None
        if self.device != 'local' and evolve.get('latency') == 'measured':
            raise PipelineConfigError(f"{where}evolve.latency: 'measured' times candidates on this host, but the "
                                      f"device is {self.device!r}; accepted: device (the default) or flops, both "
                                      f"measured on that device")


def _check_settings(data: dict[str, Any], where: str, prefix: str) -> None:
    known = [f.name for f in dataclasses.fields(PipelineConfig)]
    for key, value in data.items():
        if key not in known:
            raise PipelineConfigError(f'{where}{prefix}{key}: unknown setting; accepted: {", ".join(known)}'
                                      f'{" and quick" if not prefix else ""}')
        if key in SCHEMA:
            if not isinstance(value, dict):
                raise PipelineConfigError(f'{where}{prefix}{key}: {value!r} is not a mapping; expected settings '
                                          f'such as {{{", ".join(f"{k}: ..." for k in list(SCHEMA[key])[:2])}}}')
            for name, item in value.items():
                setting = SCHEMA[key].get(name)
                if setting is None:
                    raise PipelineConfigError(f'{where}{prefix}{key}.{name}: unknown setting; accepted: '
                                              f'{", ".join(sorted(SCHEMA[key]))}')
                _check_value(setting, item, f'{where}{prefix}{key}.{name}')
        else:
            _check_value(TOP_LEVEL[key], value, f'{where}{prefix}{key}')


def _check_value(setting: Setting, value: Any, name: str) -> None:
    if setting.accepts(value):
        return
    type_name = type(value).__name__
    article = 'an' if type_name[0] in 'aeiou' else 'a'
    kind = f' ({article} {type_name})' if not isinstance(value, (list, dict)) or setting.kind != 'floats' else ''
    example = ', e.g. [0.4]' if setting.kind == 'floats' and not isinstance(value, list) else ''
    raise PipelineConfigError(f'{name}: {value!r}{kind} is not {setting.describe()}{example}')


def load_pipeline_config(path: str | Path, *, quick: bool = False) -> PipelineConfig:
    """Read and check a pipeline YAML file; ``quick`` applies its ``quick:`` section.

    Raises
    ------
    FileNotFoundError
        No such file.
    PipelineConfigError
        Not a file, not YAML, or a setting that is not accepted (file, key and value named).
    """
    import yaml
    path = Path(path)
    if path.is_dir():
        raise PipelineConfigError(f'pipeline config {path} is a directory; expected a YAML file such as '
                                  f'examples/fashion_mnist/pipeline.yml')
    if not path.is_file():
        raise FileNotFoundError(f'pipeline config {path} does not exist')
    try:
        data = yaml.safe_load(path.read_bytes().decode('utf-8'))
    except UnicodeDecodeError as error:
        raise PipelineConfigError(f'{path}: not a text file (byte {error.start} is not UTF-8); expected YAML') \
            from None
    except yaml.YAMLError as error:
        mark = getattr(error, 'problem_mark', None)
        at = f' at line {mark.line + 1}, column {mark.column + 1}' if mark is not None else ''
        problem = getattr(error, 'problem', None) or str(error).splitlines()[0]
        raise PipelineConfigError(f'{path}: YAML syntax error{at}: {problem}') from None
    return PipelineConfig.from_dict({} if data is None else data, quick=quick, source=str(path))
