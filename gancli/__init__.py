"""gancli: train, sample, animate, score and inspect the classic GANs from one command line."""

__version__ = "0.1.0"
