"""--engine ray: Ray Data in local mode gives the local engine's labels, row for row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from thrifty.errors import ThriftyError
from thrifty.predict import predict_file

ray = pytest.importorskip("ray")
from thrifty.engines.ray import predict_ray  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_ray_matches_the_local_engine(tmp_path: Path, ag_news_run: Path, ag_news: Path, local_ray):
    texts = pcsv.read_csv(ag_news / "pool.csv").column("text").to_pylist()
    idx = np.random.default_rng(7).integers(0, len(texts), 1200)
    corpus = tmp_path / "c.parquet"
    pq.write_table(pa.table({"doc_id": [f"id{(i * 31) % 1201}" for i in range(1200)], "text": [texts[i][:150] for i in idx]}),
                   corpus, row_group_size=300)
    run = ag_news_run / "run"
    s = predict_ray(run, corpus, tmp_path / "ray_out", id_col="doc_id", batch_size=256, probs=True)
    predict_file(run, corpus, tmp_path / "local.parquet", id_col="doc_id", batch_size=256, workers=1, probs=True)
    got = pq.ParquetDataset(tmp_path / "ray_out").read()
    ref = pq.read_table(tmp_path / "local.parquet")
    assert s.engine == "ray" and s.rows == 1200 and got.num_rows == 1200
    # the file is split into blocks of about a batch, so more than one actor gets work
    assert len(list((tmp_path / "ray_out").glob("*.parquet"))) >= 3
    assert got.column_names == ref.column_names
    by_id = {i: k for k, i in enumerate(got.column("doc_id").to_pylist())}
    order = [by_id[i] for i in ref.column("doc_id").to_pylist()]  # every id once; Ray may reorder batches
    got = got.take(order)
    assert got.column("label").to_pylist() == ref.column("label").to_pylist()
    np.testing.assert_allclose(got.column("confidence").to_numpy(), ref.column("confidence").to_numpy(), rtol=1e-6)
    with pytest.raises(ThriftyError, match="--id-col"):
        predict_ray(run, corpus, tmp_path / "x", batch_size=256)
    with pytest.raises(ThriftyError, match="already exists"):
        predict_ray(run, corpus, tmp_path / "ray_out", id_col="doc_id")
