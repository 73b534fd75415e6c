"""The FC errors' former home, kept while ``localcloud/timers.py`` still imports it from here.

The classes live in ``localcloud/fc/exceptions.py`` (moto's layout); point imports there.
"""

from localcloud.fc.exceptions import FcApiError

__all__ = ["FcApiError"]
