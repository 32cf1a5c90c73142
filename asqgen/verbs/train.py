"""``asqgen train``: quantization-aware training of the digits CNN, or of the ResNet-8, the
ResNet-20 or the MobileNet-V2 on Fashion-MNIST; writes the checkpoint and its bundle."""

import time
from pathlib import Path

import torch

from core.bundle import save
from core.errors import DataError, UsageError
from core.rules import MappingError
from export.resnet import (MODELS, REFERENCE_IMAGES, ResnetRecipe, fashion_data,
                           golden_agreement, resnet_bundle, train_resnet)
from export.train import Recipe, save_checkpoint, train

from ..options import given
from .export import save_bundle


def run(args):
    torch.set_num_threads(1)
    model_name = args.model or ("resnet8" if args.data == "fashion-mnist" else "cnn")
    if (args.data == "fashion-mnist") != (model_name in MODELS):
        raise UsageError(f"--model {model_name} does not train on --data {args.data} (the "
                         f"digits take the cnn, Fashion-MNIST the resnet8, the resnet20 or the "
                         f"mobilenetv2)")
    if args.data == "fashion-mnist":
        return _train_resnet(args, model_name)
    if args.train_images is not None:
        raise UsageError("--train-images is for --data fashion-mnist")
    try:
        recipe = Recipe(bits=args.bits, weight_method=args.weights, act_method=args.acts,
                        seed=args.seed, float_epochs=given(args.float_epochs, 15),
                        epochs=given(args.epochs, 15)).check()
    except ValueError as e:
        raise UsageError(str(e)) from None
    print(f"asqgen train: {recipe.describe()}, seed {recipe.seed}, {recipe.float_epochs} float "
          f"+ {recipe.epochs} QAT epochs", flush=True)
    start = time.perf_counter()
    try:
        model, info = train(recipe, log=lambda line: print("  " + line, flush=True),
                            progress=True)
    except MappingError as e:                  # the recipe asks for what the hardware refuses
        raise UsageError(str(e)) from None
    npz, js = save_checkpoint(model, info, args.out)
    bundle = save_bundle(model, info, Path(args.out) / "bundle")
    print(f"  test accuracy {100 * info['test_accuracy']:.2f}% (float "
          f"{100 * info['float_test_accuracy']:.2f}%) in {time.perf_counter() - start:.1f} s; "
          f"wrote {npz}, {js} and {bundle}")
    return 0


def _train_resnet(args, model_name):
    """``--data fashion-mnist``: the ResNet-8 (``export.resnet``), the ResNet-20
    (``export.resnet20``) or the MobileNet-V2 (``export.mobilenetv2``), its checkpoint, its
    bundle
    (the first ``REFERENCE_IMAGES`` test images as reference inputs) and the golden model
    against PyTorch on the whole test set."""
    d = ResnetRecipe()
    try:
        recipe = ResnetRecipe(bits=args.bits, weight_method=args.weights, act_method=args.acts,
                              seed=args.seed,
                              float_epochs=given(args.float_epochs, d.float_epochs),
                              epochs=given(args.epochs, d.epochs),
                              train_images=args.train_images, model=model_name).check()
    except (ValueError, MappingError) as e:
        raise UsageError(str(e)) from None
    data = fashion_data(recipe.train_images, recipe.size)
    print(f"asqgen train: Fashion-MNIST {recipe.size}x{recipe.size}, {recipe.describe()}, seed "
          f"{recipe.seed}, {recipe.float_epochs} float + {recipe.epochs} QAT epochs on "
          f"{len(data[0])} training images", flush=True)
    start = time.perf_counter()
    model, info = train_resnet(recipe, data=data,
                               log=lambda line: print("  " + line, flush=True), progress=True)
    print(f"  test accuracy {100 * info['test_accuracy']:.2f}% (float "
          f"{100 * info['float_test_accuracy']:.2f}%) on {len(data[4])} test images in "
          f"{time.perf_counter() - start:.1f} s", flush=True)
    bundle = resnet_bundle(model, info, data[4], data[5])
    folder = save(bundle, Path(args.out) / "bundle")
    golden = golden_agreement(model, bundle, data[4], data[5])
    info["golden"] = golden
    npz, js = save_checkpoint(model, info, args.out)
    print(f"  golden model vs PyTorch on all {golden['images']} test images: top-1 agreement "
          f"{100 * golden['top1_agreement']:.2f}%, accuracy golden "
          f"{100 * golden['golden_accuracy']:.2f}%, PyTorch {100 * golden['torch_accuracy']:.2f}%"
          f", largest logit difference {golden['logits_max_difference']:.4f} (golden model "
          f"{golden['seconds']:.0f} s)")
    print(f"  wrote {npz}, {js} and {folder} ({REFERENCE_IMAGES} reference test images)")
    return 0
