"""Train the example scikit-learn servable: a logistic-regression classifier for iris flowers.

Writes model.joblib next to this file. The iris data ship with scikit-learn, so this needs no
network. Run: python3 train.py
"""
import os

import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

here = os.path.dirname(os.path.abspath(__file__))
X, y = load_iris(return_X_y=True)
model = LogisticRegression(max_iter=500).fit(X, y)
joblib.dump(model, os.path.join(here, "model.joblib"))
print(f"trained on {len(X)} flowers; accuracy on them {model.score(X, y):.3f}; wrote model.joblib")
