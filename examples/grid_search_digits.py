"""Choose a MADE's hidden sizes and direct connections by held-out log-likelihood.

scikit-learn's ``GridSearchCV`` drives densitykit's ``MADEEstimator`` like any density
estimator: each candidate is fitted on two folds and scored on the third by
``score(X)``, the mean log-likelihood per example. The data are scikit-learn's 1,797
8x8 digits, thresholded to binary images (64 variables); a quarter is kept for the
final test. Needs ``pip install densitykit[sklearn]``; a few minutes on a laptop CPU.

    python examples/grid_search_digits.py
"""

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, train_test_split

from densitykit.estimator import MADEEstimator

X = (load_digits().data > 7).astype(np.int64)  # 1,797 binary 8x8 digits, 64 variables
X_train, X_test = train_test_split(X, test_size=0.25, random_state=0)
search = GridSearchCV(
    MADEEstimator(epochs=30, patience=5),
    {"hidden_sizes": [(32,), (128,), (128, 128)], "direct_connections": [False, True]},
    cv=3,
)
search.fit(X_train)
print("| hidden sizes | direct connections | held-out NLL (nats per image, mean ± sd of 3 folds) |")
print("| --- | --- | --- |")
results = search.cv_results_
for params, mean, std in zip(
    results["params"], results["mean_test_score"], results["std_test_score"]
):
    print(
        f"| {params['hidden_sizes']} | {params['direct_connections']} | {-mean:.2f} ± {std:.2f} |"
    )
print(f"best: {search.best_params_}; test NLL {-search.score(X_test):.2f} nats per image")
