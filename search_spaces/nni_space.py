"""Reading any NNI 3.0 model space: its ``LayerChoice`` layers, their shapes, and what LightNAS cannot search.

LightNAS searches spaces whose every mutable is the choice of a ``LayerChoice``. This module
reads such a space without knowing its class:

* :func:`space_candidates`: label -> candidate names (as strings), one entry per label even when
  several modules share it (NAS-Bench-201 cells share their edge labels); it refuses, before any
  training, a space with another kind of mutable (``Repeat`` depths, ``MutableConv2d`` widths,
  ``InputChoice``, a bare ``nni.choice``), naming the module and the mutable
  (:class:`UnsupportedMutableError`).
* :func:`probe_choices`: a dry run of the space on an example input (each ``LayerChoice`` runs its
  first candidate) that records the input and output shape of every call of every choice module.
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
from nni.nas.nn.pytorch import LayerChoice, ModelSpace, MutableModule
from torch import nn

__all__ = ['UnsupportedMutableError', 'ChoiceCall', 'SpaceProbe', 'is_lightnas_space', 'space_candidates',
           'choice_modules', 'probe_choices', 'space_fingerprint', 'sample_from_arch', 'freeze_arch',
           'arch_string']

_logger = logging.getLogger(__name__)


class UnsupportedMutableError(ValueError):
    """The model space has a mutable LightNAS cannot search (anything but a ``LayerChoice``'s choice)."""


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
    """

    calls: list[ChoiceCall]
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    candidates: dict[str, list[str]] = field(default_factory=dict)

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


def space_candidates(space: nn.Module) -> dict[str, list[str]]:
    """Label -> candidate names (strings, in the choice's order) of every ``LayerChoice`` of ``space``.

    Raises
    ------
    UnsupportedMutableError
        A module other than a ``LayerChoice`` holds a mutable (``Repeat``'s depth, a
        ``MutableConv2d``'s kernel size or width, an ``InputChoice``, ...), or a mutable is owned by
        no module (a bare ``nni.choice``); the message names the module, its type and the mutable.
    ValueError
        The space has no ``LayerChoice``, or two modules share a label with different candidates.
    """
    if not isinstance(space, nn.Module):
        raise TypeError(f'space must be an NNI ModelSpace (an nn.Module), got {type(space).__name__}')
    for name, module in space.named_modules():
        if isinstance(module, MutableModule) and type(module) is not LayerChoice and module.mutables:
            if isinstance(module, LayerChoice):
                what = f'a subclass of LayerChoice ({type(module).__name__})'
            else:
                what = f'of type {type(module).__name__}'
            raise UnsupportedMutableError(
                f'module {name or "<root>"!r} {what} holds the mutable(s) {_mutable_names(module)}, which LightNAS '
                f'cannot search: it searches LayerChoice layers only (each candidate a plain module). Express the '
                f'choice as a LayerChoice of fixed modules (e.g. one candidate per kernel size or depth), or fix it')
    candidates: dict[str, list[str]] = {}
    for name, module in choice_modules(space):
        names = [str(value) for value in module.choice.values]
        if module.label in candidates and candidates[module.label] != names:
            raise ValueError(f'modules labelled {module.label!r} disagree on their candidates: '
                             f'{candidates[module.label]} and {names} (at {name!r})')
        candidates.setdefault(module.label, names)
        for op, candidate in zip(names, module):
            nested = [sub for sub, child in candidate.named_modules()
                      if isinstance(child, MutableModule) and child.mutables]
            if nested:
                raise UnsupportedMutableError(
                    f'candidate {op!r} of LayerChoice {name!r} (label {module.label!r}) holds nested mutables in '
                    f'{nested}; LightNAS searches LayerChoice layers of fixed candidates only')
    if not candidates:
        raise ValueError(f'the model space {type(space).__name__} has no LayerChoice to search')
    owned = set(candidates)
    simplified = space.simplify() if isinstance(space, MutableModule) else {}
    for label, mutable in simplified.items():
        if label not in owned:
            raise UnsupportedMutableError(
                f'mutable {label!r} ({mutable!r}) of the model space is not the choice of a LayerChoice '
                f'(a bare nni.choice or a module LightNAS does not know); LightNAS searches LayerChoice layers only')
        if not isinstance(mutable, Categorical):
            raise UnsupportedMutableError(f'mutable {label!r} is a {type(mutable).__name__}; LightNAS searches '
                                          f'LayerChoice (categorical) choices only')
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

    Each ``LayerChoice`` runs its first candidate (NNI's dry run); the candidates of one
    choice must share their input and output shapes, as ``LayerChoice`` requires. The
    space runs in eval mode, and its training flag is restored.

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
    calls: list[ChoiceCall] = []
    counts: dict[str, int] = {}
    handles = []

    def hook(path: str, module: LayerChoice):
        def record(_module, args, output):
            index = counts.get(path, 0)
            counts[path] = index + 1
            calls.append(ChoiceCall(path, module.label, _shape_of(args, f'the input of {path!r}'),
                                    _shape_of(output, f'the output of {path!r}'), index))
        return record

    for path, module in choice_modules(space):
        handles.append(module.register_forward_hook(hook(path, module)))
    was_training = space.training
    space.eval()
    try:
        output = space(example_input)
    finally:
        space.train(was_training)
        for handle in handles:
            handle.remove()
    unused = sorted({path for path, _ in choice_modules(space)} - set(counts))
    if unused:
        _logger.warning('LayerChoice modules %s were not called in the dry run; their latency is not counted', unused)
    return SpaceProbe(calls, tuple(int(d) for d in example_input.shape),
                      _shape_of(output, 'the output of the model space'), candidates)


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
    for path, module in choice_modules(space):
        label = module.label
        if label in sample:
            continue
        if label not in arch:
            raise ValueError(f'the architecture has no op for layer {label!r}; it has {sorted(arch)}')
        by_name = {str(value): value for value in module.choice.values}
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
