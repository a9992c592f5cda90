"""Datasets: Fashion-MNIST (Debian package or torchvision), CIFAR-10 and image folders, splits.

Nothing here downloads at import or at test time. Fashion-MNIST is read from the idx files
of Debian's ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``) or
from a directory the user gives; torchvision's download is used only when asked for.
"""

from __future__ import annotations

import gzip
import logging
import os
from pathlib import Path
from typing import Any
import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

__all__ = ['DataNotFoundError', 'FASHION_MNIST_DIRS', 'find_fashion_mnist', 'read_idx', 'load_fashion_mnist', 'load_for_preset',
           'load_cifar10', 'load_image_folder', 'split_train_arch', 'FASHION_MNIST_MEAN', 'FASHION_MNIST_STD']

_logger = logging.getLogger(__name__)

#: Where Fashion-MNIST is looked for, in order (after ``$FASHION_MNIST_DIR``).
FASHION_MNIST_DIRS: tuple[str, ...] = ('/usr/share/datasets/fashion-mnist', '~/.cache/nni-lightnas/fashion-mnist')
FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2860, 0.3530
_FASHION_FILES = {
    'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
    'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'),
}


class DataNotFoundError(FileNotFoundError):
    """No dataset at any of the places looked at; the message lists them."""


def _find_file(directory: Path, stem: str) -> Path | None:
    for name in (stem + '.gz', stem, stem.replace('-idx', '.idx') + '.gz'):
        for candidate in (directory / name, directory / 'raw' / name, directory / 'FashionMNIST' / 'raw' / name):
            if candidate.is_file():
                return candidate
    return None


def find_fashion_mnist(root: str | os.PathLike | None = None) -> Path:
    """Directory holding the Fashion-MNIST idx files.

    Looks at ``root`` when given (only there), else ``$FASHION_MNIST_DIR``, then
    :data:`FASHION_MNIST_DIRS`.

    Raises
    ------
    DataNotFoundError
        Naming every directory tried and how to install the data.
    """
    if root is not None:
        candidates = [Path(root).expanduser()]
    else:
        candidates = [Path(p).expanduser() for p in ([os.environ['FASHION_MNIST_DIR']]
                                                    if os.environ.get('FASHION_MNIST_DIR') else [])]
        candidates += [Path(p).expanduser() for p in FASHION_MNIST_DIRS]
    for directory in candidates:
        if all(_find_file(directory, stem) for files in _FASHION_FILES.values() for stem in files):
            return directory
    tried = ', '.join(str(c) for c in candidates)
    raise DataNotFoundError(
        f'Fashion-MNIST not found; tried: {tried}. Install it with `apt-get install dataset-fashion-mnist` '
        f'(Debian), point --data-dir or $FASHION_MNIST_DIR at a directory with the four idx(.gz) files, '
        f'or pass download=True to let torchvision fetch it.')


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an idx file (optionally gzipped) into a numpy array.

    Examples
    --------
    >>> import tempfile, struct
    >>> path = tempfile.mktemp()
    >>> _ = open(path, 'wb').write(struct.pack('>BBBBI', 0, 0, 8, 1, 3) + bytes([1, 2, 3]))
    >>> read_idx(path).tolist()
    [1, 2, 3]
    """
    opener = gzip.open if str(path).endswith('.gz') else open
    with opener(path, 'rb') as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 8:
        raise ValueError(f'{path} is not an unsigned-byte idx file (magic {data[:4]!r})')
    num_dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], 'big') for i in range(num_dims))
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * num_dims)
    if array.size != int(np.prod(shape)):
        raise ValueError(f'{path}: header says shape {shape}, file holds {array.size} values')
    return array.reshape(shape)


def load_fashion_mnist(split: str = 'train', root: str | os.PathLike | None = None, *,
                       limit: int | None = None, normalize: bool = True, download: bool = False) -> TensorDataset:
    """Fashion-MNIST as a ``TensorDataset`` of ``(N, 1, 28, 28)`` float images and int64 labels.

    Parameters
    ----------
    split
        ``'train'`` (60,000) or ``'test'`` (10,000).
    root
        Directory of the idx files; see :func:`find_fashion_mnist` for the default search.
    limit
        Keep only the first ``limit`` examples (for tests and quick runs).
    normalize
        Standardise with the dataset's mean and std.
    download
        When the files are not found, let torchvision download them to the cache directory.

    Examples
    --------
    >>> dataset = load_fashion_mnist('test', limit=8)  # doctest: +SKIP
    >>> dataset.tensors[0].shape  # doctest: +SKIP
    torch.Size([8, 1, 28, 28])
    """
    if split not in _FASHION_FILES:
        raise ValueError(f'split must be one of {sorted(_FASHION_FILES)}, got {split!r}')
    if limit is not None and limit < 1:
        raise ValueError(f'limit must be a positive integer or None, got {limit!r}')
    try:
        directory = find_fashion_mnist(root)
    except DataNotFoundError:
        if not download:
            raise
        directory = _download_fashion_mnist()
    image_file, label_file = (_find_file(directory, stem) for stem in _FASHION_FILES[split])
    images = read_idx(image_file)  # type: ignore[arg-type]
    labels = read_idx(label_file)  # type: ignore[arg-type]
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    if normalize:
        x = (x - FASHION_MNIST_MEAN) / FASHION_MNIST_STD
    _logger.debug('Fashion-MNIST %s: %d examples from %s', split, len(x), directory)
    return TensorDataset(x, torch.from_numpy(labels.astype(np.int64)))


def _download_fashion_mnist() -> Path:
    import torchvision
    target = Path(FASHION_MNIST_DIRS[-1]).expanduser()
    _logger.info('downloading Fashion-MNIST to %s with torchvision', target)
    for train in (True, False):
        torchvision.datasets.FashionMNIST(str(target), train=train, download=True)
    return target / 'FashionMNIST' / 'raw'


def load_cifar10(root: str | os.PathLike, split: str = 'train', *, transform=None) -> Dataset:
    """CIFAR-10 from ``root`` (the extracted ``cifar-10-batches-py`` or its parent); never downloads."""
    import torchvision
    import torchvision.transforms as T
    root = Path(root).expanduser()
    candidates = [root, root.parent] if root.name == 'cifar-10-batches-py' else [root]
    for candidate in candidates:
        if (candidate / 'cifar-10-batches-py' / 'data_batch_1').is_file():
            transform = transform or T.Compose([T.ToTensor(), T.Normalize((0.4914, 0.4822, 0.4465),
                                                                          (0.2470, 0.2435, 0.2616))])
            return torchvision.datasets.CIFAR10(str(candidate), train=split == 'train', transform=transform,
                                                download=False)
    raise DataNotFoundError(f'CIFAR-10 not found under {root} (looked for cifar-10-batches-py/data_batch_1 in '
                            f'{", ".join(str(c) for c in candidates)}); extract cifar-10-python.tar.gz there.')


def load_image_folder(root: str | os.PathLike, split: str = 'train', *, input_size: int = 224,
                      transform=None) -> Dataset:
    """An ImageNet-style folder (``root/split/class/*.jpg``); never downloads."""
    import torchvision
    import torchvision.transforms as T
    directory = Path(root).expanduser() / split
    if not directory.is_dir():
        raise DataNotFoundError(f'image folder {directory} does not exist; expected {root}/{split}/CLASS/IMAGE')
    if transform is None:
        normalize = T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
        transform = (T.Compose([T.RandomResizedCrop(input_size), T.RandomHorizontalFlip(), T.ToTensor(), normalize])
                     if split == 'train' else
                     T.Compose([T.Resize(int(input_size / 0.875)), T.CenterCrop(input_size), T.ToTensor(), normalize]))
    return torchvision.datasets.ImageFolder(str(directory), transform=transform)


def load_for_preset(preset: Any, split: str = 'train', data_dir: str | os.PathLike | None = None, *,
                    limit: int | None = None) -> Dataset:
    """The dataset a search space preset is shaped for: its ``split`` (``train`` or ``test``).

    ``1x28x28`` presets (``fashion_mnist``, ``tiny``) read Fashion-MNIST (``data_dir`` optional);
    ``3x32x32`` (``cifar10``) reads CIFAR-10 from ``data_dir``; larger RGB inputs (``imagenet``)
    read an ImageNet-style folder ``data_dir/{train,val}/CLASS/IMAGE`` (``test`` reads ``val``).
    ``limit`` keeps the first ``limit`` examples.

    Examples
    --------
    >>> len(load_for_preset('tiny', 'test', limit=100))  # doctest: +SKIP
    100
    """
    from nni_lightnas.search_spaces import get_preset
    config = get_preset(preset) if isinstance(preset, str) else preset
    shape = (config.in_chans, config.input_size)
    if shape == (1, 28):
        return load_fashion_mnist(split, data_dir, limit=limit)
    if data_dir is None:
        raise DataNotFoundError(f'preset {config.name!r} ({config.in_chans}x{config.input_size}x{config.input_size}) '
                                f'needs data_dir: CIFAR-10 for 3x32x32, an ImageNet-style folder for larger inputs')
    if shape == (3, 32):
        dataset = load_cifar10(data_dir, split)
    elif config.in_chans == 3:
        dataset = load_image_folder(data_dir, 'train' if split == 'train' else 'val', input_size=config.input_size)
    else:
        raise ValueError(f'no dataset for a {config.in_chans}x{config.input_size}x{config.input_size} preset; '
                         f'accepted: 1x28x28 (Fashion-MNIST), 3x32x32 (CIFAR-10), 3xNxN (image folder)')
    if limit is not None and limit < len(dataset):  # type: ignore[arg-type]
        dataset = Subset(dataset, list(range(limit)))
    return dataset


def split_train_arch(dataset: Dataset, arch_fraction: float = 0.5, *, seed: int = 0) -> tuple[Subset, Subset]:
    """Split a training set into a weight-training part and an architecture-validation part.

    One-shot search updates weights on the first and architecture parameters on the second.

    Examples
    --------
    >>> data = TensorDataset(torch.arange(10))
    >>> weights_part, arch_part = split_train_arch(data, 0.3, seed=1)
    >>> len(weights_part), len(arch_part)
    (7, 3)
    >>> sorted(weights_part.indices + arch_part.indices) == list(range(10))
    True
    """
    if not 0 < arch_fraction < 1:
        raise ValueError(f'arch_fraction must be in (0, 1), got {arch_fraction!r}')
    size = len(dataset)  # type: ignore[arg-type]
    num_arch = int(round(size * arch_fraction))
    if num_arch < 1 or num_arch >= size:
        raise ValueError(f'cannot split {size} examples with arch_fraction={arch_fraction}: one part would be empty')
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed)).tolist()
    return Subset(dataset, order[num_arch:]), Subset(dataset, order[:num_arch])

