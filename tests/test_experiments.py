import json

from simec.cli import main
from tests.conftest import tiny_vit


def test_vit_exploration_runs_and_resumes(fake_mnist, tmp_path):
    model_dir = tmp_path / "vit"
    tiny_vit(num_labels=10, image_size=28, patch_size=7, layers=1).save_pretrained(model_dir)
    out = tmp_path / "exp"
    argv = [
        "experiment",
        "vit-exploration",
        "--model",
        str(model_dir),
        "--data",
        str(fake_mnist),
        "--images",
        "2",
        "--steps",
        "5",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(argv) == 0
    rows = sorted((out / "rows").glob("*.json"))
    assert len(rows) == 2
    first = json.loads(rows[0].read_text())
    assert first["simec"]["images"] == 5 and first["baseline"]["images"] > 0
    assert (out / "figure1_importance_0.png").is_file()
    assert (out / "figure3_decoded_0.png").is_file()
    stamp = rows[0].stat().st_mtime_ns
    argv[argv.index("--images") + 1] = "3"  # resume: two rows kept, one more computed
    assert main(argv) == 0
    assert rows[0].stat().st_mtime_ns == stamp
    results = json.loads((out / "results.json").read_text())
    assert results["aggregate"]["images"] == 3
    assert "| SiMEC seconds per image |" in (out / "table.md").read_text()
