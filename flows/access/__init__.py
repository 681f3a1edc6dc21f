"""Who may do what, and the record of what they did: users and roles, sessions, audit trail, reviews.

Plain Python (sqlite3, argon2-cffi, hashlib): it imports neither prefect, mlflow
nor streamlit, so the `clinfuse users` / `clinfuse audit` commands, the train
flow and the dashboard share one implementation. The dashboard may import
:mod:`flows.settings` and :mod:`flows.access` (and nothing else under ``flows``).
Every store lives under ``settings.access_dir``; paths are passed in explicitly.
"""
