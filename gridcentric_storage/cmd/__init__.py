"""Console scripts, one small module each (see setup.cfg's entry points).

Imported before any of them: eventlet (still pulled in by oslo.service, which
none of our code runs on) warns on import that it is deprecated. An operator
can do nothing about that, and it would bury a service's one-line errors on
stderr, so it is silenced here and only here.
"""

import warnings

warnings.filterwarnings('ignore', message=r'(?s).*Eventlet is deprecated')
