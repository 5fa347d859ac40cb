"""Data: the datasets declared once (registry: torch-free specs), verified dataset files (datasets: CIFAR-10,
SVHN, MNIST), ImageNet-style folders (image_folder), and which training images a run uses (subset).
May import: atomic, errors."""
