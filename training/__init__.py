"""Training side of the house-price service: data, script-mode training, serving hooks, job runner.

``train.py`` and ``inference.py`` are also uploaded on their own (in ``sourcedir.tar.gz``) and run by
the SageMaker scikit-learn container, so they import only ``house_prices`` and third-party packages,
never ``training.*``.
"""
