"""The app layer: where a project folder is opened, and what a user runs.

The only package that opens the Kedro project (:mod:`.project`); the rest of the library takes data.

- :mod:`.project`: the project's parameters and datasets without a Kedro session, and the loaders
  of the search, the passage finder, an aspect's space and the listening room;
- :mod:`.cli`: the ``mess-kedro`` command line (click); :mod:`.passage_query`: its passage question;
- :mod:`.recommend`: the recommender's names, thin aliases of the search;
- :mod:`.webapp`: the listening room (FastAPI);
- :mod:`.final_line`: a failed run's last line: what happened, what to do;
- :mod:`.library_warnings`: library deprecations silenced by message; every other warning shows.
"""
