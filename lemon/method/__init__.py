"""The method's mathematics, independent of any run: LEMoN's hyper-parameters and presets, the evaluation
(AUROC, best-F1 thresholds), the hyper-parameter search, and the label-free noise-rate rule."""
