"""Support code shared by every test tier (and the benchmark); it holds no tests and no fixtures.

- ``rig``: the process rig: free ports, daphne processes started through
  ``python -m config.serve``, private ``redis-server`` processes, a private database, users
  created by a ``manage.py shell`` subprocess, stopping, killing and restarting a process;
- ``ws``: real WebSocket clients of a daphne process (``websockets``, and raw TCP sockets);
- ``cluster``, ``hardening``, ``browser``: the deployments of ``tests/crossprocess``,
  ``tests/hardening`` and ``tests/e2e``, built on ``rig``, and their helpers;
- ``asgi``: in-process helpers: the ASGI application through channels' communicator, listeners
  on the channel layer, bearer-authenticated API clients;
- ``auth``: credentials for the authentication suites: forged tokens, web logins, tickets;
- ``data``: test data written straight through the models or services;
- ``metrics``: reading Prometheus text.

Fixtures stay in the ``conftest.py`` files; test modules import from here and from
``tests.factories`` only, never from another test module or a ``conftest.py``.
"""
