"""Text drift of the prompts, on embeddings from the served model's own `/v1/embeddings` (never a
downloaded model): Evidently's `model` method for embedding drift, as its source has it: the
reference's vectors labelled 1 and the window's 0, split 50/50 (random_state 42), an SGD
log-loss classifier (random_state 42), and drift when its ROC AUC on the held-out half is over
the threshold (0.55). A sample of each side is embedded (the kernel methods are O(n^2); a
classifier needs no more): the same records every time, chosen by a hash of their seq.

The prompts are read from the content table as the redaction policy kept them; a store that keeps
digests only has no text to embed, and says so. Each embedding call is an audited record with
purpose evaluation: on the record, and never counted as production."""

from __future__ import annotations

from typing import Any

from ..audit.connect import connect_read_only
from ..errors import EndpointError
from ..timestamps import normalise_ts
from .sketch import NOT_PRODUCTION

__all__ = ["domain_classifier_auc", "sample_prompts", "text_drift"]

_NOT = ", ".join("?" * len(NOT_PRODUCTION))
# The production prompts kept as text: the keyed records by their keys, the unkeyed tail by its bodies.
_KEYED = ("SELECT k.seq, c.text FROM record_keys k JOIN records r ON r.seq = k.seq "
          "JOIN content c ON c.seq = k.seq AND c.kind = 'prompt' "
          "WHERE k.seq <= ? AND k.event_type = 'inference' AND k.ts_start >= ? AND k.ts_start < ? AND c.text IS NOT NULL "
          f"AND coalesce(json_extract(CAST(r.body AS TEXT), '$.purpose'), '') NOT IN ({_NOT})")
_TAIL = ("SELECT r.seq, c.text FROM records r JOIN content c ON c.seq = r.seq AND c.kind = 'prompt' "
         "WHERE r.seq > ? AND json_extract(CAST(r.body AS TEXT), '$.event_type') = 'inference' "
         "AND json_extract(CAST(r.body AS TEXT), '$.ts_start') >= ? AND json_extract(CAST(r.body AS TEXT), '$.ts_start') < ? "
         f"AND c.text IS NOT NULL AND coalesce(json_extract(CAST(r.body AS TEXT), '$.purpose'), '') NOT IN ({_NOT})")


def sample_prompts(db_path: Any, start: str, end: str, limit: int) -> list[str]:
    """Up to `limit` production prompts started in [start, end), as stored (redacted)."""
    from ..audit.querykeys import keyed_upto

    db = connect_read_only(db_path)
    try:
        keyed = keyed_upto(db)
        where = (normalise_ts(start), normalise_ts(end), *NOT_PRODUCTION)
        rows = db.execute(_KEYED, (keyed, *where)).fetchall() + db.execute(_TAIL, (keyed, *where)).fetchall()
    finally:
        db.close()
    rows.sort(key=lambda row: ((row[0] * 2654435761) % 4294967296, row[0]))  # the same sample every time
    return [text for _seq, text in rows[:limit]]


def embed(log: Any, endpoint: str, texts: list[str], *, model_id: str | None = None, batch: int = 16
          ) -> list[list[float]]:
    """Vectors from an OpenAI-compatible /embeddings route (llama.cpp's server: govkit serve
    --embedding), each call an audited record of `log` with purpose evaluation."""
    from ..inference.decider import audited_client, post_chat

    out: list[list[float]] = []
    url = endpoint.rstrip("/") + "/embeddings"
    client, _ = audited_client(log, model_artifact=None, model_id=model_id, purpose="evaluation", timeout_s=300.0,
                               headers={"X-Govkit-Purpose": "evaluation"})
    with client:
        for i in range(0, len(texts), batch):
            answer = post_chat(client, url, {"input": texts[i:i + batch], "model": model_id or "model"}, endpoint)
            if answer.status_code != 200:
                raise EndpointError(f"{url} answered {answer.status_code}: {answer.text[:300]} (is the model "
                                    "server started with embeddings on? govkit serve --embedding)")
            data = sorted(answer.json().get("data") or [], key=lambda d: d.get("index", 0))
            out.extend([list(map(float, d["embedding"])) for d in data])
    return out


def domain_classifier_auc(reference: list[list[float]], current: list[list[float]]) -> float:
    """Evidently's ModelDriftMethod on these vectors: the ROC AUC telling the window from the reference."""
    import numpy as np
    from sklearn.linear_model import SGDClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    x = np.vstack([np.asarray(reference, dtype=float), np.asarray(current, dtype=float)])
    y = np.array([1] * len(reference) + [0] * len(current))
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.5, random_state=42, shuffle=True)
    classifier = SGDClassifier(loss="log_loss", random_state=42)
    classifier.fit(x_train, y_train)
    return float(roc_auc_score(y_test, classifier.predict_proba(x_test)[:, 1]))


def text_drift(log: Any, endpoint: str, *, reference: tuple[str, str], window: tuple[str, str], sample: int,
               threshold: float, model_id: str | None = None, min_texts: int = 20,
               cached: dict[str, Any] | None = None) -> dict[str, Any]:
    """The prompt-text drift of one window against the reference (the reference's vectors are
    kept in `cached` across the windows of a run)."""
    cache = cached if cached is not None else {}
    if "reference" not in cache:
        texts = sample_prompts(log.path, *reference, sample)
        cache["reference"] = (len(texts), embed(log, endpoint, texts, model_id=model_id) if len(texts) >= min_texts
                              else [])
    n_ref, ref_vectors = cache["reference"]
    texts = sample_prompts(log.path, *window, sample)
    if n_ref < min_texts or len(texts) < min_texts:
        return {"note": f"{n_ref} reference and {len(texts)} window prompts kept as text, fewer than {min_texts}: "
                        "not measured (a store keeping digests only has none)", "breach": False}
    auc = domain_classifier_auc(ref_vectors, embed(log, endpoint, texts, model_id=model_id))
    return {"method": "domain classifier (Evidently's model method)", "auc": auc, "threshold": threshold,
            "reference_texts": n_ref, "window_texts": len(texts), "breach": auc > threshold}
