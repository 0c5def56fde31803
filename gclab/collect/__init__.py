"""The write side: models, data, training, the metric engine and the recorder (docs/METRICS.md).
`gclab.collect.metrics` loads on first use, so `import gclab.collect` alone loads no torch."""

import lazy_loader as lazy

__getattr__ = lazy.attach(__name__, submodules=["metrics"])[0]
