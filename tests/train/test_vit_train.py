import json

import numpy as np
from safetensors.torch import load_file

from simec import load_adapter
from simec.cli import main


def test_train_vit_end_to_end_from_the_cli(fake_mnist, tmp_path):
    out = tmp_path / "vit"
    code = main(
        [
            "train",
            "vit",
            "--dataset",
            "mnist",
            "--data",
            str(fake_mnist),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--quiet",
            "--seed",
            "4",
        ]
    )
    assert code == 0
    split = json.loads((out / "split.json").read_text())
    assert split["seed"] == 4
    assert sorted(split["train_indices"] + split["validation_indices"]) == list(range(40))
    log = json.loads((out / "training_log.json").read_text())
    assert log["metrics"]["train_size"] == 32 and len(log["history"]) == 1
    card = (out / "README.md").read_text()
    assert "Accuracy" in card and "split seed 4" in card
    assert "classifier.weight" in load_file(str(out / "model.safetensors"))
    adapter = load_adapter(out)  # the trained model is explorable as saved
    digit = np.full((28, 28), 9, dtype=np.uint8)
    assert adapter.prepare(digit).embeddings.shape == (197, 48)
