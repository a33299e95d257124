"""What gunicorn runs around the app: the worker class, malloc tuning, first-start secrets.

fairworker.py is the gthread worker that shares a burst of keep-alive connections between
workers; malloc.py sets glibc's thresholds in the master before the fork; secretfiles.py writes
the first-start secrets (docker compose's one-shot service, `python -m service.server.secretfiles`).

Loaded by gunicorn.conf.py, never by the app: it imports nothing of ours, and gunicorn reaches
the app only through service.wsgi.
"""
