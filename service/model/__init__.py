"""The model layer: the neuron's math, its training and the policy around it; CSV tables.

neuron.py holds the Neuron (weights, optional scaling; a callable: rows -> probabilities) and
the article's training rule; validation.py the seeded held-out split, scores and the
majority-class baseline; policy.py the retrain policy (split -> train -> score -> warnings and
gate -> champion verdict); tabular.py a text/csv table -> rows, targets and feature names.

No I/O and no HTTP: it imports numpy and service.errors only. Every other layer may import it.
"""
