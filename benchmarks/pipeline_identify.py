"""detect -> embed -> identify with trained models, per backend combination (issue 19's pipeline figures).

Trains a tiny face detector (ssd-mobilenetv2, width 0.25, 64 x 64, on come-and-go ``synthetic:video``) and a
face embedder (MobileFaceNet ``mbf``, width 0.25, 64 x 64, ArcFace on ``synthetic:faces``) with fcbench's
own CLI, writes a gallery (one photo for each of the video's identities, plus ``--distractors`` photos of
people in no video), converts the detector as a ``--split-at`` pair (ONNX, OpenVINO IR) and the embedder
(ONNX, OpenVINO IR), and runs ``fcbench eval --pipeline`` eagerly and with ``--backend all``: DIR at FPIR =
0.1, FNMR at FMR = 1e-4 and the ms per frame in all and by stage, one line per backend combination.

Honest limits, printed again at the end: the detector is scored on the videos it trained on (at this size
and budget it does not find faces in unseen ones; tests/test_detection_train_eval.py says why), and the
embedder's training identities include the gallery's people (``synthetic:faces`` draws identity k
everywhere), so identification is closed-set for the enrolled people; the distractors are unseen.

    python benchmarks/pipeline_identify.py [--workdir DIR] [--threads 2] [--frames 16]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common

VIDEO = ["--data-opt", "height=64", "--data-opt", "width=64", "--data-opt", "visits=true"]


def sh(cmd: list[str], cwd: Path) -> str:
    print("$ " + shlex.join(cmd), flush=True)
    t = time.time()
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"failed ({out.returncode}):\n{out.stderr[-3000:]}")
    print(f"  ({time.time() - t:.0f} s)", flush=True)
    return out.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=None, help="where the models, gallery and store go (default: a temp dir)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--frames", type=int, default=16, help="frames of each probe video (default 16)")
    ap.add_argument("--videos", type=int, default=2, help="probe videos, among the detector's training ones")
    ap.add_argument("--identities", type=int, default=20, help="people in the videos, all enrolled (default 20)")
    ap.add_argument("--distractors", type=int, default=500, help="gallery photos of people in no video")
    ap.add_argument("--min-score", type=float, default=0.3)
    a = ap.parse_args()
    root = Path(a.workdir or tempfile.mkdtemp(prefix="fcbench-pipe-")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    fc = str(Path(sys.executable).parent / "fcbench")
    print(f"machine: {_common.cpu_model()}, {os.cpu_count()} cores; threads {a.threads}; workdir {root}")
    print(f"before: {_common.uptime()}")
    start = _common._cpu_snapshot()
    th = ["--threads", str(a.threads)]
    ident = ["--data-opt", f"identities={a.identities}"]
    if not (root / "det" / "model.pt").exists():
        sh([fc, "train", "--model", "ssd-mobilenetv2", "-o", "width=0.25", "-o", "input_size=64", "-o",
            "num_classes=3", "--data", "synthetic:video", *VIDEO, *ident, "--data-opt", "videos=8", "--epochs", "3",
            "--batch-size", "16", "--lr", "0.005", "--optimizer", "adamw", "--weight-decay", "0", *th,
            "--out", "det", "--store", "s.sqlite"], root)
    if not (root / "emb" / "model.pt").exists():
        sh([fc, "train", "--model", "mbf", "-o", "width=0.25", "-o", "input_size=64", "-o", "embedding_size=64",
            "--head", "arcface", "--data", "synthetic:faces", "--data-opt", "num_classes=64", "--data-opt",
            "samples_per_class=16", "--epochs", "6", "--batch-size", "64", "--lr", "0.1", "--schedule", "cosine",
            *th, "--out", "emb", "--store", "s.sqlite"], root)
    sh([fc, "eval", "emb/model.pt", "--data", "synthetic:pairs", "--data-opt", "num_pairs=600", *th,
        "--store", "s.sqlite"], root)
    if not (root / "gallery").exists():
        from fcbench.pipeline_eval import write_synthetic_gallery

        write_synthetic_gallery(root / "gallery", enrolled=a.identities, distractors=a.distractors, size=64)
    sh([fc, "convert", "det/model.pt", "--to", "onnx,openvino", "--split-at", "6", "--out", "split"], root)
    sh([fc, "convert", "emb/model.pt", "--to", "onnx,openvino"], root)
    probe = ["--gallery", "gallery", "--probe", "synthetic:video", *VIDEO, *ident, "--data-opt",
             f"videos={a.videos}", "--data-opt", f"frames={a.frames}", "--min-score", str(a.min_score), *th,
             "--store", "s.sqlite"]
    print(sh([fc, "eval", "--pipeline", "det/model.pt,emb/model.pt", *probe], root))
    print(sh([fc, "eval", "--pipeline", "split/model.front.onnx,emb/model.onnx", "--backend", "all", *probe], root))
    js = json.loads(sh([fc, "eval", "--pipeline", "split/model.front.onnx,emb/model.xml", "--backend",
                        "onnxruntime:cpu,openvino:CPU", *probe, "--format", "json"], root))
    print(json.dumps({k: js.get(k) for k in ("metrics", "counts", "ms_per_stage", "notes") if k in js}, indent=1))
    now = _common._cpu_snapshot()
    print(f"after: {_common.uptime()}; other processes used {_common.others_cores(start):.2f} cores on average "
          f"over {now[0] - start[0]:.0f} s")
    print("limits: the detector is scored on videos it trained on; the embedder trained on the enrolled "
          "identities (closed set for them); the distractors are people it never saw")


if __name__ == "__main__":
    main()
