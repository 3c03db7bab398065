"""Writer methods for images (filled in by the image capability)."""


class ImageLogging:
    ACCELERATED = ()
