"""Optional dependencies, imported only by the methods that need them.

The core (scalars, text, histograms, PR curves, images) needs neither tensorboard nor
matplotlib. The other torch methods reuse torch's own packers and tracer
(``torch.utils.tensorboard``, which needs tensorboard), TensorBoard's protos, matplotlib
and moviepy. A missing one raises ImportError naming the extra that installs it.
"""

import importlib

# module -> extra of tbfast that installs it
EXTRAS = {"tensorboard": "tensorboard", "matplotlib": "figures", "moviepy": "video", "onnx": "onnx",
          "PIL": "tensorboard"}


def require(module, feature):
    """``importlib.import_module(module)``; ImportError naming the extra to install when
    it (or its top-level package) is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        extra = EXTRAS.get(top, "tensorboard")
        raise ImportError(f"{feature} needs the optional package {top!r}: pip install 'tbfast[{extra}]' "
                          f"({exc})") from exc


def torch_tensorboard(name, feature):
    """``torch.utils.tensorboard.<name>`` (which imports tensorboard)."""
    require("tensorboard", feature)
    return require(f"torch.utils.tensorboard.{name}", feature)


def torch_summary(feature="this method"):
    """torch's summary packers (``torch.utils.tensorboard.summary``)."""
    return torch_tensorboard("summary", feature)
