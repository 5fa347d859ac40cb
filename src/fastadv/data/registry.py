"""The dataset registry: each dataset declared once, as data (a :class:`DatasetSpec`), like the methods
(fastadv.methods.registry) and the models (fastadv.models.registry). The valid ``data.dataset`` values, which
datasets are image folders, the input shape and class count a model is built for, the normalisation statistics
and the training augmentations all derive from it. Torch-free: the config and the workflow read it.
"""
from __future__ import annotations

from dataclasses import dataclass

from fastadv.errors import unknown_choice


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset as data.

    ``shape``: C, H, W of one image (an image folder's: the crop a model is built for). ``augmentations``: applied
    to training batches when ``data.augment`` is true. ``mean``/``std``: per-channel statistics of the training
    images, for models with ``normalize: true``. ``folder``: read from an image folder per batch
    (fastadv.data.image_folder), not from a prepared ``.npz``.
    """

    name: str
    summary: str
    shape: tuple
    num_classes: int
    augmentations: tuple
    mean: tuple
    std: tuple
    folder: bool = False


SPECS = {s.name: s for s in (
    # Crop (4-px zero padding) + flip for CIFAR-10, crop only for SVHN, none for MNIST: the augmentations of the
    # GradAlign code (data.py).
    DatasetSpec("cifar10", "CIFAR-10 (Krizhevsky 2009): 50k/10k 32x32 colour images, 10 classes", (3, 32, 32), 10,
                ("crop", "flip"), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    DatasetSpec("svhn", "SVHN (Netzer et al. 2011): 73k/26k 32x32 house-number digits, 10 classes", (3, 32, 32), 10,
                ("crop",), (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    DatasetSpec("mnist", "MNIST (LeCun et al. 1998): 60k/10k 28x28 grey digits, 10 classes", (1, 28, 28), 10, (),
                (0.1307,), (0.3081,)),
    # An ImageFolder tree (image_folder.py): random-resized crop + flip, the torchvision ImageNet statistics.
    DatasetSpec("imagenet", "ImageNet-1k (Russakovsky et al. 2015) as an image folder tree, 1000 classes",
                (3, 224, 224), 1000, ("resized_crop", "flip"), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
                folder=True),
)}
DATASETS = tuple(SPECS)
FOLDER_DATASETS = tuple(name for name, s in SPECS.items() if s.folder)


def dataset_spec(name: str) -> DatasetSpec:
    """The spec of ``name``; an unknown name is a one-line error listing the valid ones."""
    if name not in SPECS:
        raise unknown_choice("dataset", name, SPECS)
    return SPECS[name]
