"""NNI trial programs: run as ``python -m nni_lightnas.trials.NAME`` from an experiment config.

Each module reads its parameters with ``nni.get_next_parameter()`` and reports with
``nni.report_final_result``; see the module docstrings and ``examples/``.
"""
