"""Usage: python -m gancli train --preset dcgan-mnist"""

from gancli.cli import entry

if __name__ == "__main__":
    entry()
