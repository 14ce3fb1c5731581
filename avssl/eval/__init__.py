"""Evaluation of learnt representations: pure metric code in :mod:`avssl.eval.metrics`.

Classification (accuracy, balanced accuracy, confusion matrix), k-NN and linear probes (the
ESC-50 5-fold linear SVM, a logistic-regression probe), retrieval (R@k, nDCG@k, mAP and the
label-based relevance matrices) and sound-source localisation (cIoU, its AUC, pointing game).
"""
