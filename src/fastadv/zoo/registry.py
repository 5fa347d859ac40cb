"""``fastadv import --from SOURCE``: the sources (one file each) and the conversion into a fastadv model file.

Every source's reader returns the foreign state dict and what it knows of the model (dataset, ε, the
normalisation its code applies, the evaluation crop); the keys are mapped onto ours
(fastadv.models.foreign), loaded strictly into our architecture (a key missing or left over is an error),
and written atomically with the architecture, the normalisation and the origin (file, SHA-256, source)."""
from __future__ import annotations

from pathlib import Path

from fastadv.data.registry import dataset_spec
from fastadv.data.sources import file_digest
from fastadv.errors import FastAdvError, unknown_choice
from fastadv.models.foreign import convert_state
from fastadv.models.normalize import Normalize
from fastadv.training.checkpoint import model_from_spec, save_imported_model
from fastadv.zoo import official, robustbench, wong

SOURCES = {"official": official.read, "wong": wong.read, "robustbench": robustbench.read}


def _dataset(read: dict, spec: dict, given: str | None) -> str:
    """The dataset: as given, else as the source says, else by the input channels (1: MNIST, 3: CIFAR-10)."""
    dataset = given or read.get("dataset") or ("mnist" if spec["in_shape"][0] == 1 else "cifar10")
    d = dataset_spec(dataset)
    if d.num_classes != spec["num_classes"] or d.shape[0] != spec["in_shape"][0]:
        raise FastAdvError(f"the weights have {spec['num_classes']} classes and {spec['in_shape'][0]} input "
                           f"channels; dataset {dataset!r} has {d.num_classes} and {d.shape[0]}: pass --dataset")
    return dataset


def convert(read: dict, dataset: str | None = None) -> tuple[dict, dict, str]:
    """(our spec with normalisation, our state dict, the dataset) of a source reader's result."""
    spec, state, (mean, std) = convert_state(read["state"])
    dataset = _dataset(read, spec, dataset)
    if spec["name"] == "resnet50":
        spec["in_shape"] = list(dataset_spec(dataset).shape)
    spec.update(mean=mean if mean is not None else read["mean"], std=std if std is not None else read["std"])
    model = model_from_spec(spec)
    for name, module in model.named_modules():  # the normalisation is the spec's: our Normalize's buffers
        if isinstance(module, Normalize):
            state.update({f"{name}.mean": module.mean, f"{name}.std": module.std})
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise FastAdvError(f"the weights do not fit {spec['name']} (width {spec['width']}): "
                           f"{' '.join(str(e).split())[:300]}") from None
    return spec, model.state_dict(), dataset


def import_model(source: str, src: str, out: str | Path, which: str = "last", dataset: str | None = None,
                 eps: float | None = None, model_dir: str | Path = "models") -> dict:
    """Convert ``src`` (a file; for robustbench a model name) into the fastadv model file ``out``; return its
    origin record."""
    if source not in SOURCES:
        raise unknown_choice("source (--from)", source, SOURCES)
    read = SOURCES[source](src, which=which, model_dir=model_dir, dataset=dataset)
    spec, state, dataset = convert(read, dataset)
    file = Path(read.get("file", src))
    origin = {"source": source, "name": src if source == "robustbench" else file.stem, "file": str(file),
              "sha256": file_digest(file), "which": which, "kind": read["kind"], "dataset": dataset,
              "eps": eps if eps is not None else read["eps"], "eval_crop": read["eval_crop"]}
    save_imported_model(out, state, spec, origin)
    return origin
