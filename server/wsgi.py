"""The module gunicorn imports: ``settee.server.wsgi:application``.

Settings come from the defaults, the ``SETTEE_CONFIG`` file and ``SETTEE_*``
variables, read once when the worker imports this module.
"""
from .app import create_app

application = create_app()
