"""What a run writes and the record it leaves: atomic files, digests, checkpoints, boundary checks.

The bottom of the package: imports nothing of mess_kedro's.

- :mod:`.atomic`: a file or folder appears whole under its real name, or not at all (temporaries
  carry the writer's pid; the umask is respected);
- :mod:`.digests`: SHA-256 of files, read in blocks (index manifests, query-cache keys);
- :mod:`.checkpoints`: state trees as safetensors + JSON, never pickle: loading runs no code;
- :mod:`.consistency`: a stage refuses inputs made for another track manifest;
- :mod:`.finite`: nothing non-finite crosses a boundary (indexed, cached, searched);
- :mod:`.tracking`: metric keys and run tags for MLflow;
- :mod:`.mlflow_context`: every MLflow run tagged with its host and pid at creation;
- :mod:`.mlflow_location`: a copied project keeps its MLflow experiment to itself;
- :mod:`.killed_runs`: a killed run's outputs set aside, never read as the latest.
"""
