"""Reading any NNI 3.0 model space: its choices, their shapes, and what LightNAS cannot search.

LightNAS searches spaces whose every mutable is the choice of a ``LayerChoice`` or the depth of a
``Repeat`` (a categorical depth, each block one ``LayerChoice`` or a module without choices, as
in NNI's ``ProxylessNAS`` hub space). This module reads such a space without knowing its class:

* :func:`space_candidates`: label -> candidate names (as strings; a depth's are ``'1'``,
  ``'2'``, ...), one entry per label even when several modules share it (NAS-Bench-201 cells
  share their edge labels); it refuses, before any training, a space with another kind of
  mutable (``MutableConv2d`` kernel sizes or widths, ``InputChoice``, a bare ``nni.choice``, a
  ``Repeat`` block that mixes fixed modules and choices), naming the module and the mutable
  (:class:`UnsupportedMutableError`).
* :func:`depth_choices`: every ``Repeat`` with a depth choice, its depths and the labels inside
  each of its blocks (:class:`DepthChoice`).
* :func:`probe_choices`: a dry run of the space on an example input (each ``LayerChoice`` runs its
  first candidate, each ``Repeat`` all its blocks) that records the input and output shape of
  every call of every choice module, and of every block without choices inside a ``Repeat``.
* :func:`space_fingerprint`: a hash of the space's structure (modules, their settings, labels and
  candidates), so a latency table built for it is not used with another.
* :func:`freeze_arch`: the fixed network of an architecture (``{label: op}``, op names as strings).

Examples
--------
>>> import torch
>>> from torch import nn
>>> from nni.nas.nn.pytorch import LayerChoice, ModelSpace
>>> class TwoLayers(ModelSpace):
...     def __init__(self):
...         super().__init__()
...         self.a = LayerChoice({'conv': nn.Conv1d(4, 4, 3, padding=1), 'skip': nn.Identity()}, label='a')
...         self.b = LayerChoice({'wide': nn.Conv1d(4, 4, 5, padding=2), 'skip': nn.Identity()}, label='b')
...     def forward(self, x):
...         return self.b(self.a(x)).mean(-1)
>>> space_candidates(TwoLayers())
{'a': ['conv', 'skip'], 'b': ['wide', 'skip']}
>>> [(call.label, call.input_shape) for call in probe_choices(TwoLayers(), torch.zeros(2, 4, 16)).calls]
[('a', (2, 4, 16)), ('b', (2, 4, 16))]
>>> type(freeze_arch(TwoLayers(), {'a': 'skip', 'b': 'wide'}).b).__name__
'Conv1d'
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch
from nni.mutable import Categorical
from nni.nas.nn.pytorch import LayerChoice, ModelSpace, MutableModule, Repeat
from torch import nn

from nni_lightnas.latency.depth_gates import DepthGate

__all__ = ['UnsupportedMutableError', 'ChoiceCall', 'SpaceProbe', 'DepthChoice', 'is_lightnas_space',
           'space_candidates', 'choice_modules', 'depth_choices', 'probe_choices', 'space_fingerprint',
           'sample_from_arch', 'freeze_arch', 'arch_string']

_logger = logging.getLogger(__name__)


class UnsupportedMutableError(ValueError):
    """The model space has a mutable LightNAS cannot search (see :func:`space_candidates`)."""


@dataclass(frozen=True)
class DepthChoice:
    """One ``Repeat`` with a depth choice.

    Attributes
    ----------
    path
        The ``Repeat``'s name in the space (``blocks.1``).
    label
        The depth choice's label (``s2_depth``).
    depths
        Its depths, in the choice's order.
    block_paths
        Names of its blocks (``blocks.1.blocks.0``, ...), as many as the largest depth.
    block_labels
        Per block, the label of the ``LayerChoice`` it is, or ``()`` for a block without choices
        (whose latency the depth's own table rows hold).
    """

    path: str
    label: str
    depths: tuple[int, ...]
    block_paths: tuple[str, ...]
    block_labels: tuple[tuple[str, ...], ...]

    @property
    def plain_blocks(self) -> list[int]:
        """Indices of the blocks without choices."""
        return [index for index, labels in enumerate(self.block_labels) if not labels]

    def gate(self) -> DepthGate:
        """The latency gate of this depth (:class:`~nni_lightnas.latency.depth_gates.DepthGate`)."""
        return DepthGate(label=self.label, depths=self.depths, blocks=self.block_labels)


@dataclass(frozen=True)
class ChoiceCall:
    """One call of one ``LayerChoice`` module in a dry run.

    Attributes
    ----------
    path
        The module's name in the space (``cells.0.layers.1.0``).
    label
        Its choice's label (shared by every module of the same choice).
    input_shape, output_shape
        Shapes of its (single) input and its output, batch included.
    call_index
        0 for the module's first call in a forward pass, 1 for a second call (weight sharing), ...
    """

    path: str
    label: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    call_index: int = 0

    @property
    def key(self) -> str:
        """Unique name of this call: the path, with ``#n`` for the n-th repeated call."""
        return self.path if self.call_index == 0 else f'{self.path}#{self.call_index}'


@dataclass
class SpaceProbe:
    """What a dry run of a model space found.

    Attributes
    ----------
    calls
        Every call of every ``LayerChoice``, in execution order.
    input_shape, output_shape
        Of the whole network.
    candidates
        Label -> candidate names (strings).
    depths
        The ``Repeat`` depth choices (:func:`depth_choices`).
    block_calls
        Every call of a block without choices inside a ``Repeat`` (its label: the depth's).
    """

    calls: list[ChoiceCall]
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    candidates: dict[str, list[str]] = field(default_factory=dict)
    depths: list[DepthChoice] = field(default_factory=list)
    block_calls: list[ChoiceCall] = field(default_factory=list)

    def calls_of(self, label: str) -> list[ChoiceCall]:
        """The calls of every module carrying ``label``."""
        return [call for call in self.calls if call.label == label]


def is_lightnas_space(space: Any) -> bool:
    """Whether ``space`` is one of this project's own spaces (``LightNASSpace``), with its presets' tooling."""
    from .lightnas_space import LightNASSpace
    return isinstance(space, LightNASSpace)


def choice_modules(space: nn.Module) -> list[tuple[str, LayerChoice]]:
    """``(path, module)`` of every ``LayerChoice`` of ``space``, in module order (shared labels repeat)."""
    return [(name, module) for name, module in space.named_modules() if isinstance(module, LayerChoice)]


def _mutable_names(module: MutableModule) -> list[str]:
    names = []
    for mutable in module.mutables:
        simplified = mutable.simplify()
        for name in (simplified or [repr(mutable)]):
            if name not in names:
                names.append(name)
    return names


def _is_searchable_repeat(module: nn.Module) -> bool:
    """A ``Repeat`` (exactly) whose depth is a categorical choice of integers."""
    return (type(module) is Repeat and isinstance(module.depth_choice, Categorical)
            and all(isinstance(depth, int) and not isinstance(depth, bool) for depth in module.depth_choice.values))


def _holds_mutables(module: nn.Module) -> list[str]:
    """Names of ``module``'s descendants (itself: ``''``) that hold mutables."""
    return [name for name, child in module.named_modules() if isinstance(child, MutableModule) and child.mutables]


def _depth_choice(path: str, module: Repeat) -> DepthChoice:
    """The :class:`DepthChoice` of a searchable ``Repeat``; refuses a block that mixes fixed modules and choices."""
    depths = tuple(int(depth) for depth in module.depth_choice.values)
    block_paths, block_labels = [], []
    for index, block in enumerate(module.blocks):
        block_path = f'{path}.blocks.{index}' if path else f'blocks.{index}'
        if type(block) is LayerChoice:
            labels: tuple[str, ...] = (block.label,)
        elif not _holds_mutables(block):
            labels = ()
        else:
            names = {name: _mutable_names(child) for name, child in block.named_modules()
                     if isinstance(child, MutableModule) and child.mutables}
            raise UnsupportedMutableError(
                f'block {block_path!r} of Repeat {path!r} (depth {module.depth_choice.label!r}) is a '
                f'{type(block).__name__} holding the mutable(s) {names}; LightNAS searches a Repeat whose blocks are '
                f'each one LayerChoice or hold no choice (e.g. Repeat(lambda index: LayerChoice(..., '
                f"label=f'stage_i{{index}}'), (1, 4)))")
        block_paths.append(block_path)
        block_labels.append(labels)
    return DepthChoice(path=path, label=module.depth_choice.label, depths=depths, block_paths=tuple(block_paths),
                       block_labels=tuple(block_labels))


def depth_choices(space: nn.Module) -> list[DepthChoice]:
    """Every ``Repeat`` of ``space`` with a depth choice, in module order (see :func:`space_candidates` for the checks).

    Examples
    --------
    >>> from nni.nas.nn.pytorch import Repeat
    >>> class Deep(ModelSpace):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.body = Repeat(lambda index: LayerChoice({'conv': nn.Conv1d(4, 4, 3, padding=1),
    ...                                                       'skip': nn.Identity()}, label=f'b{index}'),
    ...                            (1, 2), label='depth')
    ...     def forward(self, x):
    ...         return self.body(x)
    >>> [(d.label, d.depths, d.block_labels) for d in depth_choices(Deep())]
    [('depth', (1, 2), (('b0',), ('b1',)))]
    """
    return [_depth_choice(name, module) for name, module in space.named_modules() if _is_searchable_repeat(module)]


def space_candidates(space: nn.Module) -> dict[str, list[str]]:
    """Label -> candidate names (strings, in the choice's order) of every choice of ``space``.

    The choices are every ``LayerChoice`` and the depth of every ``Repeat`` (its candidates
    ``'1'``, ``'2'``, ...), whose blocks must each be one ``LayerChoice`` with a label of its own
    or a module without choices.

    Raises
    ------
    UnsupportedMutableError
        A module other than a ``LayerChoice`` or such a ``Repeat`` holds a mutable (a
        ``MutableConv2d``'s kernel size or width, an ``InputChoice``, a ``Repeat`` whose depth is an
        expression, a ``Repeat`` block that mixes fixed modules and choices, ...), or a mutable is
        owned by no module (a bare ``nni.choice``); the message names the module, its type and the
        mutable.
    ValueError
        The space has no choice, or two modules share a label with different candidates.
    """
    if not isinstance(space, nn.Module):
        raise TypeError(f'space must be an NNI ModelSpace (an nn.Module), got {type(space).__name__}')
    for name, module in space.named_modules():
        if isinstance(module, MutableModule) and type(module) is not LayerChoice and module.mutables:
            if _is_searchable_repeat(module):
                continue
            if isinstance(module, LayerChoice):
                what = f'a subclass of LayerChoice ({type(module).__name__})'
            else:
                what = f'of type {type(module).__name__}'
            raise UnsupportedMutableError(
                f'module {name or "<root>"!r} {what} holds the mutable(s) {_mutable_names(module)}, which LightNAS '
                f'cannot search: it searches LayerChoice layers (each candidate a plain module) and Repeat depths '
                f'(a categorical depth). Express the choice as a LayerChoice of fixed modules (e.g. one candidate '
                f'per kernel size or width), or fix it')
    candidates: dict[str, list[str]] = {}
    for name, module in choice_modules(space):
        names = [str(value) for value in module.choice.values]
        if module.label in candidates and candidates[module.label] != names:
            raise ValueError(f'modules labelled {module.label!r} disagree on their candidates: '
                             f'{candidates[module.label]} and {names} (at {name!r})')
        candidates.setdefault(module.label, names)
        for op, candidate in zip(names, module):
            nested = _holds_mutables(candidate)
            if nested:
                raise UnsupportedMutableError(
                    f'candidate {op!r} of LayerChoice {name!r} (label {module.label!r}) holds nested mutables in '
                    f'{nested}; LightNAS searches LayerChoice layers of fixed candidates only')
    choice_paths: dict[str, list[str]] = {}
    for name, module in choice_modules(space):
        choice_paths.setdefault(module.label, []).append(name)
    for depth in depth_choices(space):
        if depth.label in candidates:
            raise UnsupportedMutableError(f'the depth label {depth.label!r} of Repeat {depth.path!r} is also the label '
                                          f'of another choice; give each Repeat a depth label of its own')
        candidates[depth.label] = [str(value) for value in depth.depths]
        for labels in depth.block_labels:
            for label in labels:
                if len(choice_paths[label]) > 1:
                    raise UnsupportedMutableError(
                        f'LayerChoice label {label!r} inside Repeat {depth.path!r} (depth {depth.label!r}) is shared by '
                        f'{choice_paths[label]}; LightNAS needs each repeated block to carry a label of its own: '
                        f"Repeat(lambda index: LayerChoice(..., label=f'{label}_{{index}}'), ...)")
    if not candidates:
        raise ValueError(f'the model space {type(space).__name__} has no LayerChoice to search')
    owned = set(candidates)
    simplified = space.simplify() if isinstance(space, MutableModule) else {}
    for label, mutable in simplified.items():
        if label not in owned:
            raise UnsupportedMutableError(
                f'mutable {label!r} ({mutable!r}) of the model space is not the choice of a LayerChoice or a Repeat '
                f'(a bare nni.choice or a module LightNAS does not know); LightNAS searches LayerChoice layers and '
                f'Repeat depths only')
        if not isinstance(mutable, Categorical):
            raise UnsupportedMutableError(f'mutable {label!r} is a {type(mutable).__name__}; LightNAS searches '
                                          f'LayerChoice and Repeat depth (categorical) choices only')
    return candidates


def _shape_of(value: Any, what: str) -> tuple[int, ...]:
    if isinstance(value, (tuple, list)) and len(value) == 1:
        value = value[0]
    if not isinstance(value, torch.Tensor):
        raise TypeError(f'{what} is a {type(value).__name__}; LightNAS measures LayerChoice modules of one tensor '
                        f'input and one tensor output')
    return tuple(int(d) for d in value.shape)


@torch.no_grad()
def probe_choices(space: nn.Module, example_input: torch.Tensor) -> SpaceProbe:
    """Dry-run ``space`` on ``example_input`` and record every ``LayerChoice`` call's shapes.

    Each ``LayerChoice`` runs its first candidate (NNI's dry run) and each ``Repeat`` with a depth
    choice runs all its blocks, so that every block's choices are seen; the candidates of one
    choice must share their input and output shapes, as ``LayerChoice`` requires. The space
    runs in eval mode, and its training flag is restored. The whole network's output shape is
    that of the deepest network.

    Parameters
    ----------
    space
        An NNI model space with ``LayerChoice`` layers.
    example_input
        One input batch (its batch size is the one the latency is measured at).
    """
    if not isinstance(example_input, torch.Tensor):
        raise TypeError(f'example_input must be a torch.Tensor (one input batch), got {type(example_input).__name__}')
    candidates = space_candidates(space)
    depths = depth_choices(space)
    calls: list[ChoiceCall] = []
    block_calls: list[ChoiceCall] = []
    counts: dict[str, int] = {}
    handles = []

    def hook(path: str, label: str, into: list[ChoiceCall]):
        def record(_module, args, output):
            index = counts.get(path, 0)
            counts[path] = index + 1
            into.append(ChoiceCall(path, label, _shape_of(args, f'the input of {path!r}'),
                                   _shape_of(output, f'the output of {path!r}'), index))
        return record

    for path, module in choice_modules(space):
        handles.append(module.register_forward_hook(hook(path, module.label, calls)))
    modules = dict(space.named_modules())
    for depth in depths:
        for index in depth.plain_blocks:
            path = depth.block_paths[index]
            handles.append(modules[path].register_forward_hook(hook(path, depth.label, block_calls)))
    dry_run_depths = {depth.path: modules[depth.path]._dry_run_depth for depth in depths}
    was_training = space.training
    space.eval()
    try:
        for depth in depths:
            modules[depth.path]._dry_run_depth = len(depth.block_paths)
        output = space(example_input)
    finally:
        space.train(was_training)
        for path, value in dry_run_depths.items():
            modules[path]._dry_run_depth = value
        for handle in handles:
            handle.remove()
    unused = sorted({path for path, _ in choice_modules(space)} - set(counts))
    if unused:
        _logger.warning('LayerChoice modules %s were not called in the dry run; their latency is not counted', unused)
    return SpaceProbe(calls, tuple(int(d) for d in example_input.shape),
                      _shape_of(output, 'the output of the model space'), candidates, depths, block_calls)


def space_fingerprint(space: nn.Module) -> str:
    """A 16-hex-digit hash of the space's structure: class name, modules with their settings, labels, candidates.

    Two instances built with the same arguments agree; a change of a width, a kernel size, a
    candidate or a label changes it. Weights do not enter it.
    """
    digest = hashlib.sha256()
    digest.update(f'{type(space).__qualname__}\n'.encode())  # not the module: a file and a package import agree
    digest.update(repr(space).encode())
    for name, parameter in space.named_parameters():
        digest.update(f'{name}:{tuple(parameter.shape)}\n'.encode())
    digest.update(repr(sorted(space_candidates(space).items())).encode())
    return digest.hexdigest()[:16]


def sample_from_arch(space: nn.Module, arch: Mapping[str, Any]) -> dict[str, Any]:
    """The NNI sample of ``arch`` (op names as strings or the choices' own values) for ``space``.

    Raises ``ValueError`` naming the label and the accepted ops for an unknown op or a missing label.
    """
    sample: dict[str, Any] = {}
    choices = [(module.label, module.choice.values) for _, module in choice_modules(space)]
    choices += [(depth.label, depth.depths) for depth in depth_choices(space)]
    for label, values in choices:
        if label in sample:
            continue
        if label not in arch:
            raise ValueError(f'the architecture has no op for layer {label!r}; it has {sorted(arch)}')
        by_name = {str(value): value for value in values}
        op = arch[label]
        if str(op) not in by_name:
            raise ValueError(f'op {op!r} of layer {label!r} is not a candidate; accepted: {list(by_name)}')
        sample[label] = by_name[str(op)]
    return sample


def freeze_arch(space: nn.Module, arch: Mapping[str, Any]) -> nn.Module:
    """The fixed network of ``arch`` (``{label: op}``) in ``space``: ``space.freeze(sample)``."""
    return space.freeze(sample_from_arch(space, arch))


def arch_string(arch: Mapping[str, Any], labels: Sequence[str] | None = None) -> str:
    """One line for an architecture of any space: ``label=op`` joined by ``,`` in ``labels`` order.

    Examples
    --------
    >>> arch_string({'a': 'conv', 'b': 'skip'})
    'a=conv,b=skip'
    """
    labels = list(arch) if labels is None else list(labels)
    return ','.join(f'{label}={arch[label]}' for label in labels)
