"""Project settings. There is no need to edit this file unless you want to change values
from the Kedro defaults. For further information, including these default values, see
https://docs.kedro.org/en/stable/configure/configuration_basics/#configuration"""

from omegaconf.resolvers import oc

from mess_kedro.hooks import ArtifactLoggingHook, RunHygieneHook, RunTagsHook

# Instantiated project hooks. Hooks are executed in a Last-In-First-Out (LIFO) order.
HOOKS = (RunTagsHook(), ArtifactLoggingHook(), RunHygieneHook())

# Installed plugins for which to disable hook auto-registration.
# kedro-mlflow is on: conf/base/mlflow.yml points it at a local SQLite store
# (current MLflow refuses the old ./mlruns file store).
# DISABLE_HOOKS_FOR_PLUGINS = ("kedro_mlflow",)

# Class that manages the KedroSession.
# from kedro.framework.session import KedroSession
# SESSION_CLASS = KedroSession

# Class that manages storing KedroSession data.
# from kedro.framework.session.store import BaseSessionStore
# SESSION_STORE_CLASS = BaseSessionStore
# Keyword arguments to pass to the `SESSION_STORE_CLASS` constructor.
# SESSION_STORE_ARGS = {
#     "path": "./sessions"
# }

# Directory that holds configuration.
# CONF_SOURCE = "conf"

# Class that manages how configuration is loaded.
# from kedro.config import OmegaConfigLoader

# CONFIG_LOADER_CLASS = OmegaConfigLoader

# Keyword arguments to pass to the `CONFIG_LOADER_CLASS` constructor.
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # Kedro allows ${oc.env:...} in credentials only; mlflow.yml uses it to take
    # the tracking server from MLFLOW_TRACKING_URI when that is set.
    "custom_resolvers": {"oc.env": oc.env},
    # "config_patterns": {
    #     "spark" : ["spark*/"],
    #     "parameters": ["parameters*", "parameters*/**", "**/parameters*"],
    # }
}

# Class that manages Kedro's library components.
# from kedro.framework.context import KedroContext
# CONTEXT_CLASS = KedroContext

# Class that manages the Data Catalog.
# from kedro.io import DataCatalog
# DATA_CATALOG_CLASS = DataCatalog
