"""crossrank: exact, fast CPU cross-encoder reranking.

``crossrank.CrossEncoder`` takes sentence-transformers' ``CrossEncoder`` arguments and returns
what it returns, so swapping one for the other is a one-line change::

    from crossrank import CrossEncoder          # was: from sentence_transformers import CrossEncoder
    model = CrossEncoder("cross-encoder/ms-marco-MiniLM-L6-v2")
    scores = model.predict([("what is a reranker?", "A reranker reorders candidates.")])
    ranked = model.rank("what is a reranker?", ["A reranker reorders candidates.", "Paris."])

Scoring runs in the Rust engine with the GIL released.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np

from ._crossrank import Model as _Model
from ._crossrank import __version__

__all__ = ["CrossEncoder", "DEFAULT_MODEL", "__version__"]

#: The model ``CrossEncoder()`` loads when given no name.
DEFAULT_MODEL = "minilm-l6-rerank"


def _default_model_dir() -> str:
    """$CROSSRANK_DEFAULT_MODEL, the copy bundled in the wheel, or the source tree's."""
    env = os.environ.get("CROSSRANK_DEFAULT_MODEL")
    if env:  # an empty value counts as unset
        return env
    here = Path(__file__).resolve().parent
    candidates = [here / "models" / DEFAULT_MODEL]
    if len(here.parents) > 3:  # crates/python/python/crossrank in a source checkout
        candidates.append(here.parents[3] / "models" / DEFAULT_MODEL)
    for candidate in candidates:
        if (candidate / "config.json").is_file():
            return str(candidate)
    raise FileNotFoundError(
        f"the default model ({DEFAULT_MODEL}) is not bundled with this installation; "
        "set CROSSRANK_DEFAULT_MODEL or pass a model directory or hub id"
    )


class _Progress:
    """tqdm when it is installed, else a one-line bar on stderr."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.done, self.bar = total, 0, None
        self.enabled = enabled
        if not enabled:
            return
        try:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="Batches")
        except ImportError:
            self.bar = None

    def update(self, n: int) -> None:
        if not self.enabled:
            return
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        else:
            width = 30
            filled = width * self.done // max(self.total, 1)
            sys.stderr.write(f"\rBatches [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}")
            sys.stderr.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.close()
        else:
            sys.stderr.write("\n")


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _apply(fn: Callable, logits: np.ndarray) -> np.ndarray:
    """Applies an activation written for torch tensors (torch.nn.Sigmoid(), ...) or arrays."""
    try:
        import torch  # noqa: F401

        out = fn(torch.from_numpy(logits))
        return out.detach().cpu().numpy().astype(np.float32)
    except ImportError:
        return np.asarray(fn(logits), dtype=np.float32)


class CrossEncoder:
    """A cross-encoder scoring (query, document) pairs together.

    Args mirror ``sentence_transformers.CrossEncoder``: ``model_name_or_path`` is a model
    directory or a Hugging Face hub id already in the local cache (``None``: the bundled
    default model); ``max_length`` truncates pairs (default: the model's);
    ``device`` is ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``None`` / ``"auto"`` (a GPU when a
    CUDA driver and a device are there and the model's architecture runs on it, else the
    CPU); ``dtype`` the GEMM precision on a GPU (``"bf16"`` default, ``"f16"``, ``"f32"``);
    ``quantize`` ``None`` or ``"int8"`` (CPU); ``threads`` the size of the engine's thread pool (default: all cores);
    ``instruction`` the instruction of models whose prompt takes one (Qwen3-Reranker).
    """

    def __init__(
        self,
        model_name_or_path: Optional[str] = None,
        max_length: Optional[int] = None,
        device: Optional[str] = None,
        quantize: Optional[str] = None,
        threads: Optional[int] = None,
        instruction: Optional[str] = None,
        dtype: Optional[str] = None,
        **kwargs: Any,
    ):
        if device is not None and not isinstance(device, str):
            device = str(device)  # a torch.device prints as "cuda:0"
        unknown = set(kwargs) - {"trust_remote_code", "local_files_only", "cache_folder", "revision"}
        if unknown:
            raise TypeError(f"unexpected arguments: {', '.join(sorted(unknown))}")
        if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
            raise ValueError(f"max_length must be a positive integer, not {max_length!r}")
        path = model_name_or_path if model_name_or_path is not None else _default_model_dir()
        self._model = _Model(str(path), max_length, quantize, threads, instruction, device, dtype)
        self.model_name_or_path = path
        self.device = self._model.device

    @property
    def num_labels(self) -> int:
        """Labels of the classifier head."""
        return self._model.num_labels

    @property
    def max_length(self) -> int:
        """Tokens a pair is truncated to."""
        return self._model.max_length

    def __repr__(self) -> str:
        m = self._model
        return (
            f"CrossEncoder({self.model_name_or_path!r}, architecture={m.architecture!r}, "
            f"max_length={m.max_length}, num_labels={m.num_labels}, threads={m.threads})"
        )

    def predict(
        self,
        sentences: Union[Sequence[str], Sequence[Sequence[str]]],
        batch_size: int = 32,
        show_progress_bar: Optional[bool] = None,
        activation_fn: Optional[Callable] = None,
        apply_softmax: bool = False,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        instruction: Optional[str] = None,
    ):
        """Scores pairs, in input order.

        ``sentences`` is a list of ``(query, document)`` pairs, or one pair (then one score
        comes back). The default activation is the model's (sigmoid for one label unless the
        model's config says Identity; none for two labels); ``activation_fn`` replaces it
        (applied to the logits), ``apply_softmax`` applies a softmax over two or more labels.
        Returns a numpy array (``(n,)`` for one label, ``(n, labels)`` otherwise), a torch
        tensor with ``convert_to_tensor``, or a list with ``convert_to_numpy=False``.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, not {batch_size!r}")
        single = len(sentences) == 2 and all(isinstance(s, str) for s in sentences)
        pairs_in = [sentences] if single else list(sentences)
        pairs = []
        for i, p in enumerate(pairs_in):
            if isinstance(p, str) or len(p) != 2 or not all(isinstance(x, str) for x in p):
                raise ValueError(f"sentences[{i}] must be a (query, document) pair of strings")
            pairs.append((p[0], p[1]))
        labels = self._model.num_labels
        logits: List[List[float]] = []
        scores: List[float] = []
        if show_progress_bar is None:
            show_progress_bar = False
        progress = _Progress(math.ceil(len(pairs) / batch_size), bool(show_progress_bar))
        try:
            for start in range(0, len(pairs), batch_size):
                lg, sc = self._model.predict(pairs[start : start + batch_size], instruction)
                logits.extend(lg)
                scores.extend(sc)
                progress.update(1)
        finally:
            progress.close()
        raw = np.asarray(logits, dtype=np.float32).reshape(len(pairs), labels)
        if activation_fn is not None:
            out = _apply(activation_fn, raw)
        elif labels == 1:
            out = np.asarray(scores, dtype=np.float32).reshape(len(pairs), 1)
        else:
            out = raw
        if apply_softmax and out.ndim == 2 and out.shape[1] > 1:
            out = _softmax(out)
        if out.ndim == 2 and out.shape[1] == 1:
            out = out[:, 0]
        if convert_to_tensor:
            import torch

            result = torch.from_numpy(np.ascontiguousarray(out))
            return result[0] if single else result
        if not convert_to_numpy:
            listed = out.tolist()
            return listed[0] if single else listed
        return out[0] if single else out

    def rank(
        self,
        query: str,
        documents: Sequence[str],
        top_k: Optional[int] = None,
        return_documents: bool = False,
        batch_size: int = 32,
        show_progress_bar: Optional[bool] = None,
        activation_fn: Optional[Callable] = None,
        apply_softmax: bool = False,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        instruction: Optional[str] = None,
    ) -> List[Dict[str, Any]]:
        """Ranks ``documents`` for ``query``: ``[{"corpus_id", "score", "text"?}]`` best first
        (ties keep input order), cut to ``top_k``."""
        if not isinstance(query, str):
            raise ValueError("query must be a string")
        if isinstance(documents, str):
            raise ValueError("documents must be a list of strings, not one string")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"top_k must be a positive integer, not {top_k!r}")
        documents = list(documents)
        if not documents:
            return []
        scores = self.predict(
            [(query, d) for d in documents],
            batch_size=batch_size,
            show_progress_bar=show_progress_bar,
            activation_fn=activation_fn,
            apply_softmax=apply_softmax,
            convert_to_numpy=True,
            instruction=instruction,
        )
        if scores.ndim != 1:
            raise ValueError(
                f"rank needs one score per document; this model has {scores.shape[1]} labels "
                "(pass apply_softmax=True and use predict, or an activation_fn that returns one value)"
            )
        results = []
        for i, s in enumerate(scores):
            item: Dict[str, Any] = {"corpus_id": i, "score": s}
            if return_documents:
                item["text"] = documents[i]
            results.append(item)
        results.sort(key=lambda r: -float(r["score"]) if not math.isnan(float(r["score"])) else math.inf)
        return results[:top_k] if top_k is not None else results
