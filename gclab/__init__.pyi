# The public API of `import gclab`, for editors and type checkers. At run time gclab/__init__.py serves
# these same names lazily from this file (lazy_loader.attach_stub), so `import gclab` loads no torch.
# Every line is the real import; `X as X` marks a re-export (PEP 484), which jedi and pyright require.
# tests/test_gclab_facade.py checks that this lists exactly gclab.__all__.
from . import lightning as lightning
from .collect import metrics as metrics
from .collect.config import RunConfig as RunConfig
from .collect.metrics import batch_loss as batch_loss
from .collect.metrics import dist_from_init as dist_from_init
from .collect.metrics import functional_dimension as functional_dimension
from .collect.metrics import geometric_complexity as geometric_complexity
from .collect.metrics import geometric_complexity_estimate as geometric_complexity_estimate
from .collect.metrics import ntk_gram as ntk_gram
from .collect.metrics import param_norm_sq as param_norm_sq
from .collect.metrics import per_example_grad_norms as per_example_grad_norms
from .collect.metrics import register_rule as register_rule
from .collect.metrics import sharpness as sharpness
from .collect.metrics import spectral_product as spectral_product
from .collect.metrics import step_metrics as step_metrics
from .collect.metrics import step_terms as step_terms
from .collect.metrics import theorem_terms as theorem_terms
from .collect.recorder import Diverged as Diverged
from .collect.recorder import Recorder as Recorder
from .collect.runner import collect_sweep as collect_sweep
from .collect.sweep import load_sweep as load_sweep
from .read import claims as claims
from .read import query as query
from .read import render_report as render_report
