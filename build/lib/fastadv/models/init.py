import math

from torch import nn


def init_weights(module: nn.Module) -> None:
    """He-normal init used by the GradAlign code (utils.initialize_weights).

    Conv: N(0, 2 / (k·k·out_channels)); Linear: N(0, 2 / in_features); biases 0;
    BatchNorm: weight 1, bias 0. Apply with ``model.apply(init_weights)``.
    """
    if isinstance(module, nn.Conv2d):
        n = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / n))
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / module.in_features))
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
