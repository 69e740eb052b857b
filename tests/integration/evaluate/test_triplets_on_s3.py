"""`vljepa evaluate --text-triplets s3://...`: a triplet file read from S3 (moto's server on
127.0.0.1), as a benchmark's annotation file kept next to the feature caches would be."""

from __future__ import annotations

import json

import s3fs

from ops.data.sample_data import sample_triplets
from ops.evaluate.text_triplets import triplet_accuracy, write_triplets
from pipelines.evaluate import evaluate
from pipelines.models import export

BUCKET = "vljepa-triplets"


def test_evaluate_reads_triplets_from_s3(s3_endpoint, minilm_model, tmp_path, capsys):
    fs = s3fs.S3FileSystem()
    if not fs.exists(BUCKET):
        fs.mkdir(BUCKET)
    triplets = sample_triplets()[:9]
    write_triplets(f"s3://{BUCKET}/eval/triplets.jsonl", triplets)
    assert export.main(["--preset", "minilm", "--out", str(tmp_path / "model")]) == 0
    capsys.readouterr()
    assert evaluate.main(["--model", str(tmp_path / "model"), "--text-triplets", f"s3://{BUCKET}/eval/triplets.jsonl",
                          "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["text_triplets"] == triplet_accuracy(minilm_model.embed_texts, triplets)
