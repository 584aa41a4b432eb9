"""Head fitting on cached features: pooled vectors + labels -> a trained Keras head and its history (epochs, or the C values a logistic head tried).

The train stage fits the served heads with it, cross-validation refits them per fold.
"""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
from omegaconf import DictConfig

from pipeline.model import build_head


def fit(
    model: keras.Model, x, y, validation, cfg: DictConfig, learning_rate: float, epochs: int,
    callbacks: list = (), class_weight=None, verbose: int = 2,
) -> pd.DataFrame:
    """Train up to `epochs`, stop when the validation loss stops improving, keep the best epoch."""
    # 32 steps per compiled call: a head's step is far cheaper than Python's dispatch of it.
    model.compile(keras.optimizers.Adam(learning_rate), loss="binary_crossentropy", metrics=["accuracy"], steps_per_execution=32)
    stop = keras.callbacks.EarlyStopping(patience=cfg.train.patience, restore_best_weights=True)
    history = model.fit(
        x, y, validation_data=validation, epochs=epochs, batch_size=cfg.train.batch_size,
        class_weight=class_weight, callbacks=[*callbacks, stop], verbose=verbose,
    )
    return pd.DataFrame(history.history)


def balanced(labels: np.ndarray) -> dict[int, float]:
    """Class weights that make both labels count alike (the reject class is the smaller folder)."""
    counts = np.bincount(labels.astype(int), minlength=2)
    return {c: len(labels) / (2 * max(n, 1)) for c, n in enumerate(counts)}


def fit_logistic(head: keras.Model, x: np.ndarray, y: np.ndarray, validation: tuple, c_grid: list[float], balance: bool) -> pd.DataFrame:
    """Set the head's one Dense layer to the L2-regularised logistic regression (scikit-learn) on its
    standardised features with the lowest validation log loss over c_grid -> one row per C tried.

    balance: both labels count alike, in the fit and in the validation loss (the "neither" head).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from threadpoolctl import threadpool_limits

    standardise = head.get_layer("standardise")
    z, z_val = (np.asarray(standardise(v)) for v in (x, validation[0]))
    y_val = validation[1]
    weights = {name: (np.vectorize(balanced(labels).get)(labels.astype(int)) if balance else None) for name, labels in (("fit", y), ("val", y_val))}
    rows, fitted = [], []
    # One model along the path, weakest regularisation last, each fit starting from the one before
    # (warm_start): the same optimum, reached in fewer iterations than from zero.
    model = LogisticRegression(max_iter=2000, class_weight="balanced" if balance else None, warm_start=True)
    for c in sorted(c_grid):
        # One BLAS thread: L-BFGS's matrix-vector products run at half the speed on two here
        # (benchmarks/README.md, section 12).
        with threadpool_limits(1, user_api="blas"):
            model.set_params(C=c).fit(z, y)
        p, p_val = model.predict_proba(z)[:, 1], model.predict_proba(z_val)[:, 1]
        rows.append({
            "c": c,
            "loss": log_loss(y, p, sample_weight=weights["fit"], labels=[0, 1]),
            "accuracy": float(((p >= 0.5) == (y == 1)).mean()),
            "val_loss": log_loss(y_val, p_val, sample_weight=weights["val"], labels=[0, 1]),
            "val_accuracy": float(((p_val >= 0.5) == (y_val == 1)).mean()),
        })
        fitted.append((model.coef_.T.astype("float32"), model.intercept_.astype("float32")))
    history = pd.DataFrame(rows)
    head.layers[-1].set_weights(list(fitted[int(history.val_loss.idxmin())]))
    return history


def fit_head(
    cfg: DictConfig, spec, x: np.ndarray, y: np.ndarray, validation: tuple, name: str, balance: bool, callbacks: list = (), verbose: int = 2
) -> tuple[keras.Model, pd.DataFrame]:
    """A head (spec: cfg.head or cfg.neither_head) on pooled features -> (head, its history: epochs, or the C values tried)."""
    head = build_head(x, spec, name)
    if spec.fit == "logistic":
        history = fit_logistic(head, x, y, validation, list(spec.c_grid), balance)
        for step, row in history.drop(columns="c").iterrows():  # one step per C tried: the MLflow curves a Keras head has per epoch
            for callback in callbacks:
                callback.on_epoch_end(step, row.to_dict())
        return head, history
    weights = balanced(y) if balance else None
    return head, fit(head, x, y, validation, cfg, cfg.train.learning_rate, cfg.train.epochs, callbacks, weights, verbose)


def fit_known_head(cfg: DictConfig, x: np.ndarray, y: np.ndarray, validation: tuple, callbacks: list = (), verbose: int = 2) -> tuple[keras.Model, pd.DataFrame]:
    """The head on pooled features (cfg.head): airplane (0) vs automobile (1) -> (head, its history)."""
    return fit_head(cfg, cfg.head, x, y, validation, "probability", False, callbacks, verbose)


def fit_other_head(
    cfg: DictConfig, known: list[np.ndarray], other: list[np.ndarray], val: np.ndarray, other_val: np.ndarray,
    callbacks: list = (), verbose: int = 2,
) -> tuple[keras.Model, pd.DataFrame]:
    """The "neither" head on pooled features: every view of the known images (label 0) against the
    reject-class ones (label 1), the classes weighted alike -> (head, its history)."""
    x = np.concatenate(known + other)
    y = np.r_[np.zeros(sum(map(len, known))), np.ones(sum(map(len, other)))].astype("float32")
    validation = (np.concatenate([val, other_val]), np.r_[np.zeros(len(val)), np.ones(len(other_val))].astype("float32"))
    return fit_head(cfg, cfg.neither_head, x, y, validation, "other_probability", True, callbacks, verbose)
