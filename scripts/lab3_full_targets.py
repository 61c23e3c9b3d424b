"""Lab 3's three target runs in the full profile, without the rest of notebook 03.

The whole notebook in the full profile is 160 fine-tuning epochs (3.5 to 4 hours on 2 CPU cores, by
the measured epoch times); its targets need three of its eight runs: (c) 4 and 2 bits, (d) 70% pruned
+ 2 bits. This script makes
exactly the notebook's calls for those, plus the cheap evaluations of (b) and (e), and writes a JSON.

    python scripts/lab3_full_targets.py --dataset fashion-mnist --out runs/lab3_full_targets.json
"""

import argparse
import json
import time

import torch

from labkit import labs, profiles, prune, train
from labkit.atomic import atomic_open


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=None, help="DATASET override, e.g. fashion-mnist")
    parser.add_argument("--out", required=True, help="JSON file the results are written to")
    args = parser.parse_args()

    profile = profiles.get_profile("full")
    data = profiles.lab_data(profile, "resnet20", args.dataset)
    config = labs.finetune_config(profile, lr=0.002, weight_decay=1e-4)  # as notebook 03
    results, start = {"dataset": data.name, "config": repr(config)}, time.time()

    def resnet20(**kwargs):
        return profiles.lab_model(profile, "resnet20", args.dataset, **kwargs)[0]

    def record(key, value):
        results[key] = value
        print(f"[{time.time() - start:7.0f} s] {key}: {value}", flush=True)
        with atomic_open(args.out, "w") as f:  # a kill mid-write keeps the last complete file
            json.dump(results, f, indent=1)

    record("float", train.evaluate(resnet20(), data)[1])
    for symmetric in (False, True):
        record("symmetric" if symmetric else "asymmetric",
               {n: train.evaluate(resnet20(nbits=n, symmetric=symmetric), data)[1] for n in (6, 5, 4, 3, 2)})
    pruned, _ = labs.global_pruned_resnet20(profile, args.dataset)
    record("pruned_float", train.evaluate(pruned, data)[1])
    for n in (4, 2):
        history = train.fit(resnet20(nbits=n), data, config, desc=f"{n}-bit fine-tune")
        record(f"c.{n}", {"best": history.best_acc, "last": history.test_acc[-1],
                          "per_epoch": history.test_acc})
    model, _ = labs.global_pruned_resnet20(profile, args.dataset, nbits=2)
    masks, before = prune.masks_from_zeros(model), train.evaluate(model, data)[1]
    history = prune.finetune_after_prune(model, data, config, masks, desc="pruned 2-bit fine-tune",
                                         restore_best=True)
    kept = all(torch.equal(masks[k].cpu(), m.cpu()) for k, m in prune.masks_from_zeros(model).items())
    record("d.2", {"before": before, "best": history.best_acc, "last": history.test_acc[-1],
                   "per_epoch": history.test_acc, "zeros_kept": kept,
                   "sparsity": prune.sparsity_report(model)["total"]})


if __name__ == "__main__":
    main()
