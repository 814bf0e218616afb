"""Training losses: VGG19 perceptual and style losses (torchvision-free)."""
from PIRender.losses.perceptual import (  # noqa: F401
    RELU_INDEX,
    PerceptualLoss,
    VGG19Features,
    gram_matrix,
    imagenet_normalize,
    load_vgg19,
)
