"""Data: verified dataset files (datasets: CIFAR-10, SVHN, MNIST), ImageNet-style folders (image_folder),
and which training images a run uses (subset). May import: config, atomic, errors."""
