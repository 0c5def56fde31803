"""gclab: geometric complexity of neural networks — one import name for the toolkit.

    import gclab
    gclab.geometric_complexity(model, x)                  # the metric engine (collect.metrics)
    with gclab.Recorder(data="data", sweep="mine", config={...}) as rec: ...   # record any loop
    gclab.collect_sweep("fig5", scale="demo")             # train a shipped or own sweep
    gclab.claims()                                        # the claims table with verdicts (polars)
    gclab.render_report()                                 # reports/index.html
    gclab.query("SELECT sweep, count(*) FROM runs GROUP BY ALL")   # read-only SQL → polars

The names and their homes are listed once, in gclab/__init__.pyi, which editors and type checkers
read; at run time lazy_loader serves the same names on first use (the Scientific Python lazy-loading
convention, SPEC 1), so `import gclab` stays light and the read side never loads torch.
The command line is `gclab --help` (gclab/__main__.py).
"""

import lazy_loader as lazy

__getattr__, __dir__, __all__ = lazy.attach_stub(__name__, __file__)
