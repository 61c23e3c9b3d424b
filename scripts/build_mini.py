"""Build data/fashion-mnist-mini.npz: a class-balanced, seeded subset of the real Fashion-MNIST.

Source: Debian's package dataset-fashion-mnist (`apt-get install dataset-fashion-mnist`), read
through labkit.data (which hands Debian's files to torchvision). Usage: python scripts/build_mini.py
"""

import argparse

from labkit import data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=10_000, help="training images (balanced over classes)")
    parser.add_argument("--test", type=int, default=2_000, help="test images (balanced over classes)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    full = data.load("fashion-mnist", download=False)
    mini = full.subset(args.train, args.test, seed=args.seed)
    data.save_npz(mini, data.MINI_PATH)
    print(f"wrote {data.MINI_PATH} ({data.MINI_PATH.stat().st_size / 2**20:.2f} MiB): "
          f"{len(mini.train_y)} train / {len(mini.test_y)} test images")


if __name__ == "__main__":
    main()
