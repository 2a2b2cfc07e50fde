"""The aligncycle domain: tables, schemas, playbooks, phase rules and services.

This floor never imports prefect, typer or fastapi: it is testable and fast on its own.
"""
