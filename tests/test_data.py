"""Datasets: Fashion-MNIST from the real idx files, splits, clear errors when data is missing."""

from __future__ import annotations

import gzip
import struct

import pytest
import torch

from nni_lightnas.data import (DataNotFoundError, find_fashion_mnist, load_cifar10, load_fashion_mnist,
                               load_image_folder, read_idx, split_train_arch)

DEBIAN_DIR = '/usr/share/datasets/fashion-mnist'


def _has_debian_data() -> bool:
    try:
        find_fashion_mnist(DEBIAN_DIR)
        return True
    except DataNotFoundError:
        return False


@pytest.mark.skipif(not _has_debian_data(), reason=f'Debian dataset-fashion-mnist not installed at {DEBIAN_DIR}')
def test_fashion_mnist_from_the_debian_files():
    train = load_fashion_mnist('train', DEBIAN_DIR, limit=512)
    test = load_fashion_mnist('test', DEBIAN_DIR)
    images, labels = train.tensors
    assert images.shape == (512, 1, 28, 28) and images.dtype == torch.float32
    assert len(test) == 10_000
    assert set(test.tensors[1].tolist()) == set(range(10))
    # normalised with the dataset statistics: mean ~0, std ~1 on the full test split
    assert abs(float(test.tensors[0].mean())) < 0.05
    assert abs(float(test.tensors[0].std()) - 1.0) < 0.05
    # the first training label of Fashion-MNIST is 9 (ankle boot), the first test label 9 as well
    assert int(labels[0]) == 9 and int(test.tensors[1][0]) == 9


def _write_idx(path, array_bytes, shape):
    header = struct.pack('>BBBB', 0, 0, 8, len(shape)) + b''.join(struct.pack('>I', d) for d in shape)
    with gzip.open(path, 'wb') as handle:
        handle.write(header + array_bytes)


def test_loader_reads_idx_files_from_a_given_directory(tmp_path):
    for prefix, count in (('train', 6), ('t10k', 4)):
        _write_idx(tmp_path / f'{prefix}-images-idx3-ubyte.gz', bytes(range(count)) * 784, (count, 28, 28))
        _write_idx(tmp_path / f'{prefix}-labels-idx1-ubyte.gz', bytes(range(count)), (count,))
    data = load_fashion_mnist('test', tmp_path, normalize=False)
    assert data.tensors[0].shape == (4, 1, 28, 28)
    assert data.tensors[1].tolist() == [0, 1, 2, 3]
    assert float(data.tensors[0].max()) <= 1.0


def test_missing_data_dir_names_the_paths_tried(tmp_path):
    missing = tmp_path / 'nowhere'
    with pytest.raises(DataNotFoundError, match=rf'Fashion-MNIST not found; tried: {missing}.*dataset-fashion-mnist'):
        load_fashion_mnist('train', missing)
    with pytest.raises(DataNotFoundError, match='CIFAR-10 not found under'):
        load_cifar10(missing)
    with pytest.raises(DataNotFoundError, match='image folder .* does not exist'):
        load_image_folder(missing)


def test_bad_split_and_limit():
    with pytest.raises(ValueError, match=r"split must be one of \['test', 'train'\], got 'val'"):
        load_fashion_mnist('val')
    with pytest.raises(ValueError, match='limit must be a positive integer'):
        load_fashion_mnist('train', limit=0)


def test_corrupt_idx_file_is_refused(tmp_path):
    path = tmp_path / 'bad-idx'
    path.write_bytes(b'\x08\x08\x08\x08garbage')
    with pytest.raises(ValueError, match='not an unsigned-byte idx file'):
        read_idx(path)


def test_split_is_disjoint_complete_and_seeded():
    data = torch.utils.data.TensorDataset(torch.arange(100))
    first_weights, first_arch = split_train_arch(data, 0.25, seed=3)
    again_weights, again_arch = split_train_arch(data, 0.25, seed=3)
    other_weights, _ = split_train_arch(data, 0.25, seed=4)
    assert len(first_arch) == 25 and len(first_weights) == 75
    assert not set(first_weights.indices) & set(first_arch.indices)
    assert first_weights.indices == again_weights.indices and first_arch.indices == again_arch.indices
    assert first_weights.indices != other_weights.indices
    with pytest.raises(ValueError, match=r'arch_fraction must be in \(0, 1\), got 1.5'):
        split_train_arch(data, 1.5)


def test_load_for_preset_picks_the_dataset_by_input_shape(tmp_path):
    from PIL import Image

    from nni_lightnas.data import load_for_preset
    fashion = load_for_preset('tiny', 'test', limit=7)
    assert len(fashion) == 7 and fashion[0][0].shape == (1, 28, 28)
    with pytest.raises(DataNotFoundError, match="preset 'cifar10' .*needs data_dir"):
        load_for_preset('cifar10', 'train')
    with pytest.raises(DataNotFoundError, match='CIFAR-10 not found under'):
        load_for_preset('cifar10', 'train', tmp_path)
    # an ImageNet-style folder: train/CLASS/IMAGE and val/CLASS/IMAGE; 'test' reads val
    for split, count in (('train', 3), ('val', 2)):
        for cls in ('cat', 'dog'):
            (tmp_path / split / cls).mkdir(parents=True)
            for index in range(count):
                Image.new('RGB', (40, 30), color=(index * 40, 10, 200)).save(tmp_path / split / cls / f'{index}.png')
    train = load_for_preset('imagenet', 'train', tmp_path, limit=4)
    test = load_for_preset('imagenet', 'test', tmp_path)
    assert len(train) == 4 and len(test) == 4
    image, label = test[3]
    assert image.shape == (3, 224, 224) and label == 1
