"""TODO"""

from mess_kedro import moved_attribute


def __getattr__(name: str):
    return moved_attribute(__name__, name)
