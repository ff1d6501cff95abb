"""Processes started outside the library's usual path, not imported by it.

envfile (`make env`: standard library only, so it runs before the virtual environment exists)
and devcontainer (the dev image's entry point, PID 1 of the container: sshd and JupyterLab).
"""
