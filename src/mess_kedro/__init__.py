"""mess-kedro"""

from mess_kedro.library_warnings import quiet_library_deprecations

__version__ = "0.1"

quiet_library_deprecations()
