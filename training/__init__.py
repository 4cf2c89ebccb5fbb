"""Training side of the house-price service: the data, the training script, the serving hooks, the job runner.

- Data: ``data`` (synthetic cities), ``dataset`` (a user's own CSV or Parquet, mapped and validated), ``inputs``
  (the channels and hyperparameters every job is given), ``manifest`` (what each segment was last trained on).
- Script mode: ``train`` (fit one segment's forest, write model + metrics) and ``inference`` (the serving hooks),
  ``packaging`` (``model.tar.gz`` and ``sourcedir.tar.gz``), ``convert`` (pickled artifact → packed one).
- Runs: ``jobs`` (``python -m training.jobs``), ``shards``, ``local_runs`` and ``workers`` (local), ``sagemaker_jobs``,
  ``publishing`` (inputs, code and artifacts to S3), ``verdicts`` (model-sync's decisions), ``results``,
  ``run_report`` and ``report`` (what a run produced, rendered).

``train.py`` and ``inference.py`` are also uploaded on their own (in ``sourcedir.tar.gz``) and run by the SageMaker
scikit-learn container, so they import only ``house_prices``, ``packed_forest`` and third-party packages, never
``training.*``.
"""
