"""``asqgen export``: the bundle of a trained checkpoint (``asqgen train``): the digits CNN's,
or a Fashion-MNIST network's, whose reference inputs are the first test images of the data set
(as ``asqgen train`` writes them; it needs Debian's ``dataset-fashion-mnist``)."""

from core.bundle import save
from export.digits_bundle import digits_bundle
from export.train import load_checkpoint


def save_bundle(model, info, folder):
    """The checkpoint's bundle in ``folder``; its meta holds the model's fingerprint
    (``export.to_bundle.fingerprint``), which ``compare`` checks against a checkpoint."""
    if info.get("data") == "fashion-mnist":
        import torch

        from export.fashion_mnist import arrays
        from export.resnet import resnet_bundle

        images, labels = arrays("test", size=info["size"])
        return save(resnet_bundle(model, info, torch.from_numpy(images),
                                  torch.from_numpy(labels)), folder)
    return save(digits_bundle(model, info), folder)


def run(args):
    model, info = load_checkpoint(args.checkpoint)
    folder = save_bundle(model, info, args.out)
    print(f"asqgen export: {args.checkpoint} -> {folder}")
    return 0
