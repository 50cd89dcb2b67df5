"""Usage: python -m gancli train --preset dcgan-mnist"""

from gancli.cli import app

if __name__ == "__main__":
    app()
